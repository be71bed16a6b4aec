"""odplug: labelled images to a trained detector and every deployment format, through plugins.

From Python (docs/python-api.md)::

    import odplug

    records = odplug.import_dataset("demo/supervisely", out="records")
    run = odplug.train(records.out, steps=300)
    odplug.export(run, to="tflite")

A plugin is three lines::

    from odplug import hookimpl

    @hookimpl
    def odplug_register_importers(register): ...

The Python API (`odplug.api`) is imported on first use, so ``import odplug`` stays fast and
never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from odplug.hookspecs import hookimpl

__version__ = "0.1.0"
API = ("demo_dataset", "import_dataset", "train", "evaluate", "export", "predict")
"""The functions of `odplug.api`, reachable as ``odplug.<name>``."""
__all__ = ["__version__", "hookimpl", *API]


def __getattr__(name: str) -> Any:
    """The API functions, imported on first use. Type checkers read them from
    ``__init__.pyi`` (the layout of SPEC 1, lazy loading), and so does import-linter's static
    view: ``import odplug`` does not import the API, so the tiers below it may import
    ``odplug`` itself."""
    if name in API:
        return getattr(importlib.import_module("odplug.api"), name)
    raise AttributeError(f"module 'odplug' has no attribute {name!r}")
