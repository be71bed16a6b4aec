"""Every package of the source tree is in the wheel: a package left out of pyproject's list
imports in a checkout and fails only where odplug is installed (``odplug.data.beam`` once)."""

from __future__ import annotations

import tomllib

from tests.support.tools import ROOT


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {name: ROOT / folder for name, folder in config["package-dir"].items()}
    found = {".".join((name, *init.parent.relative_to(folder).parts))
             for name, folder in roots.items() for init in folder.rglob("__init__.py")
             if "node_modules" not in init.parts}
    assert found - listed == set(), "packages missing from pyproject's [tool.setuptools]"
    assert listed - found == set(), "pyproject lists packages that do not exist"
