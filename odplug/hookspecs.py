"""The hooks a plugin implements, and the markers it uses.

One name everywhere: the marker project, the entry-point group and the hook prefix are all
``odplug``. Every hook here is a *registration* hook: odplug calls it once with a `register`
callable and the plugin calls ``register(thing)`` for each thing it provides, so odplug knows
which plugin registered what and can refuse a duplicate name without losing the others.

Hooks are called with keyword arguments only. They grow by gaining arguments (an
implementation may accept fewer), never by ``_v2`` copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from odplug.components import DatasetWriter, Exporter, Importer, Trainer

NAME = "odplug"

hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


@hookspec
def odplug_register_importers(register: Callable[[Importer], None]) -> None:
    """Register dataset importers: readers of a dataset format into `Sample` objects.

    :param register: call it with each `odplug.components.Importer` instance. Its ``name`` is
        what users pass as ``--format``; it must be unique across all plugins.
    """


@hookspec
def odplug_register_writers(register: Callable[[DatasetWriter], None]) -> None:
    """Register dataset writers: what ``data.import --to NAME`` writes the samples as.

    :param register: call it with each `odplug.components.DatasetWriter` instance.
    """


@hookspec
def odplug_register_trainers(register: Callable[[Trainer], None]) -> None:
    """Register trainers: turn TFRecords and a label map into a trained detector in a run folder.

    :param register: call it with each `odplug.components.Trainer` instance.
    """


@hookspec
def odplug_register_exporters(register: Callable[[Exporter], None]) -> None:
    """Register exporters: convert a trained run into one deployment format.

    :param register: call it with each `odplug.components.Exporter` instance. An exporter
        names the exporters it builds on in ``requires`` (edgetpu requires tflite).
    """
