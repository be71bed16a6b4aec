"""This checkout, the programs it installs, and running them as a user would."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RACCOON = ROOT.parent / "shared" / "datasets" / "raccoon"
BIN = Path(sys.executable).parent
Run = Callable[..., subprocess.CompletedProcess]


def fresh_venv(folder: Path, *installs: str | Path, editable: bool = False) -> Path:
    """A new virtual environment holding `installs` (wheels, projects); returns its bin folder.

    Only the named packages are installed into it, without their dependencies: those
    (TensorFlow and the rest, gigabytes) are borrowed from the test environment through a
    ``.pth`` line instead of downloaded again. A folder added that way is not a site directory,
    so this checkout's own editable install of odplug listed there stays inert: odplug comes
    only from `installs`. `editable` installs them with ``-e``.
    """
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for install in installs:
        args = ["-e", str(install)] if editable else [str(install)]
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                               "--no-build-isolation", "--force-reinstall", *args],
                              capture_output=True, text=True, check=False, cwd=folder)
        assert done.returncode == 0, f"pip install {install}:\n{done.stderr[-3000:]}"
    return folder / "bin"


def tool_env(venv_bin: Path) -> dict[str, str]:
    """The environment for running a fresh venv's ``odplug`` from an unrelated folder, with the
    TF.js converter, the Node packages and the TFLite metadata writer (.venv-mediapipe) this
    checkout's setup.sh installed."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PATH=f"{venv_bin}{os.pathsep}{env['PATH']}",
               ODPLUG_TFJS_PYTHON=str(ROOT / ".venv-tfjs" / "bin" / "python"),
               ODPLUG_TFJS_NODE_PREFIX=str(ROOT / "plugins" / "tfjs"),
               ODPLUG_MEDIAPIPE_PYTHON=str(ROOT / ".venv-mediapipe" / "bin" / "python"))
    return env


def needs_tfjs_toolchain() -> None:
    """Skip, saying why, where setup.sh's TF.js pieces are missing."""
    if not (ROOT / "plugins" / "tfjs" / "node_modules" / "@tensorflow" / "tfjs").is_dir() \
            or shutil.which("node") is None \
            or not (ROOT / ".venv-tfjs" / "bin" / "python").is_file():
        pytest.skip("needs Node.js, `npm ci --prefix plugins/tfjs` and .venv-tfjs (setup.sh)")


def tool_runner(venv_bin: Path, cwd: Path) -> Callable[..., str]:
    """``odplug ARGS`` from a fresh venv in `cwd`: returns stdout, fails the test with stderr."""
    env = tool_env(venv_bin)

    def odplug(*args: str) -> str:
        done = subprocess.run([str(venv_bin / "odplug"), *args], cwd=cwd, env=env,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"odplug {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done.stdout

    return odplug


def hide_module(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    """Make `hidden` look uninstalled to `odplug.components.require_module`."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == hidden else real(name, *a))


def warnings(stderr: str) -> list[str]:
    """The ``odplug: warning:`` lines of a command's standard error."""
    return [line for line in stderr.splitlines() if line.startswith("odplug: warning:")]


def write_plugin(site: Path, module: str, source: str, *, entry_point: str,
                 version: str = "1.0") -> Path:
    """A plugin distribution in folder `site`, as pip would leave it: ``<module>.py`` (the
    dedented `source`) and a ``.dist-info`` whose ``odplug`` entry point `entry_point` names
    the module. Put `site` on the path (PYTHONPATH for a subprocess) and odplug finds it."""
    import textwrap

    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[odplug]\n{entry_point} = {module}\n")
    return site / f"{module}.py"


def python_output(code: str) -> str:
    """What `code` prints, run by this interpreter in a fresh process from the repository root
    (what a new process imports, without this test session's modules); it must succeed."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()
