"""Label maps: class names to the ids (from 1; 0 is background) the detector predicts.

Ids are any unique positive numbers, gaps allowed (COCO-derived maps use 1, 3, 7, ...). A
detector has one class column per item, and the rule every part of odplug follows, from the
trainer's targets to the exporters' manifests, is **column i is the i-th item in ascending id
order**: `LabelMap.ids` is that order, `LabelMap.column_of` and `LabelMap.id_at` convert one
way and the other, and nothing else computes a column from an id.

The type lives at the bottom of odplug, beside the plugin API that hands it to importers,
writers and exporters; its file format (``label_map.pbtxt``) is `odplug.data.labelmap`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from odplug.errors import OdplugError


@dataclass(frozen=True, slots=True)
class LabelMapItem:
    id: int
    name: str
    display_name: str = ""


class LabelMap:
    """An ordered set of classes with unique names and unique positive ids.

    Items are kept in ascending id order, which is also the order of a detector's class
    columns (see the module docstring).
    """

    def __init__(self, items: Iterable[LabelMapItem], *, origin: str = "label map") -> None:
        self.items = sorted(items, key=lambda item: item.id)
        self._ids: dict[str, int] = {}
        seen_ids: set[int] = set()
        for item in self.items:
            if item.id < 1:
                raise OdplugError(f"{origin}: id {item.id} of {item.name!r} must be 1 or more")
            if not item.name:
                raise OdplugError(f"{origin}: item with id {item.id} has no name")
            if item.id in seen_ids:
                raise OdplugError(f"{origin}: id {item.id} is used twice")
            if item.name in self._ids:
                raise OdplugError(f"{origin}: name {item.name!r} is used twice")
            seen_ids.add(item.id)
            self._ids[item.name] = item.id
        self._columns = {item.id: column for column, item in enumerate(self.items)}

    @classmethod
    def from_names(cls, names: Iterable[str]) -> LabelMap:
        """Ids 1..n in the order given."""
        return cls(LabelMapItem(i, name) for i, name in enumerate(names, start=1))

    @property
    def names(self) -> list[str]:
        """Class names in column order."""
        return [item.name for item in self.items]

    @property
    def ids(self) -> list[int]:
        """Label ids in ascending order: ``ids[i]`` is the id of class column i."""
        return [item.id for item in self.items]

    def column_of(self, id_: int) -> int:
        """The class column of label id `id_`; a `KeyError` for an id not in the map."""
        return self._columns[id_]

    def id_at(self, column: int) -> int:
        """The label id of class column `column` (0 .. len - 1)."""
        if not 0 <= column < len(self.items):
            raise IndexError(f"class column {column} of a label map with {len(self)} items")
        return self.items[column].id

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self.items == other.items

    def __repr__(self) -> str:
        return f"LabelMap({self.items!r})"

    def id_of(self, name: str) -> int:
        return self._ids[name]

    def name_of(self, id_: int) -> str:
        for item in self.items:
            if item.id == id_:
                return item.name
        raise KeyError(id_)
