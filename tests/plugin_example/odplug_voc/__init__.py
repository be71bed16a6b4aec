"""A third-party odplug plugin: Pascal VOC XML annotations as an import format.

It lives in odplug's tests to prove that a separately installed package, found only through
its ``odplug`` entry point, works end to end through the real command line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

from odplug import hookimpl
from odplug.components import Importer
from odplug.data.dataset import Box, Sample
from odplug.data.report import Report
from odplug.errors import OdplugError


def _annotation_folder(source: Path) -> Path | None:
    for name in ("annotations", "Annotations"):
        if (source / name).is_dir() and any((source / name).glob("*.xml")):
            return source / name
    return None


class VocImporter(Importer):
    name = "voc"
    summary = "Pascal VOC XML: annotations/*.xml with images in images/ or JPEGImages/"

    def detect(self, source: Path) -> bool:
        return source.is_dir() and _annotation_folder(source) is not None

    def read(self, source: Path, report: Report) -> Iterator[Sample]:
        folder = _annotation_folder(source)
        if folder is None:
            raise OdplugError(f"{source}: no annotations/*.xml folder")
        images = next((source / n for n in ("images", "JPEGImages") if (source / n).is_dir()),
                      source)
        for xml_path in sorted(folder.glob("*.xml")):
            try:
                root = ElementTree.parse(xml_path).getroot()
                filename = root.findtext("filename") or xml_path.with_suffix(".jpg").name
                width = int(root.findtext("size/width") or 0) or None
                height = int(root.findtext("size/height") or 0) or None
                boxes = [
                    Box(
                        label=(obj.findtext("name") or "").strip(),
                        xmin=float(obj.findtext("bndbox/xmin") or "nan"),
                        ymin=float(obj.findtext("bndbox/ymin") or "nan"),
                        xmax=float(obj.findtext("bndbox/xmax") or "nan"),
                        ymax=float(obj.findtext("bndbox/ymax") or "nan"),
                        difficult=(obj.findtext("difficult") or "0").strip() == "1",
                        truncated=(obj.findtext("truncated") or "0").strip() == "1",
                    )
                    for obj in root.iter("object")
                ]
            except (ElementTree.ParseError, ValueError) as error:
                report.skip_image(xml_path, "malformed-annotation", f"bad VOC XML: {error}")
                continue
            yield Sample(image=images / filename, key=filename, boxes=boxes, width=width,
                         height=height, origin=str(xml_path))


@hookimpl
def odplug_register_importers(register):
    register(VocImporter())
