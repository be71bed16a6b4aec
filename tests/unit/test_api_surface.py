"""The Python API's surface without TensorFlow: ``import odplug`` and reaching its functions
stay light, ``odplug.export`` stays the function once the export machinery (`odplug.exports`)
is imported, every flag of a task is a keyword of its function, and wrong arguments are
`UsageError`s named as Python keywords, raised before any work or TensorFlow."""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path

import pytest

import odplug
from odplug import api
from odplug.errors import UsageError
from tests.support.tools import python_output


@pytest.fixture(autouse=True)
def console_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API sets up the quiet console for the process; give this worker its own back."""
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # put back as it was after
    for name in ("tensorflow", "absl"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)


def test_import_odplug_and_its_functions_load_no_tensorflow() -> None:
    code = ("import sys, odplug\n"
            "assert 'odplug.api' not in sys.modules, 'import odplug imported the API'\n"
            "functions = [getattr(odplug, name) for name in odplug.API]\n"
            "import odplug.exports.plan\n"
            "assert odplug.export is functions[odplug.API.index('export')]\n"
            "print(','.join(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    assert python_output(code) == ""


def test_all_lists_the_api_and_the_stub_matches() -> None:
    assert set(odplug.API) <= set(odplug.__all__)
    assert all(callable(getattr(odplug, name)) for name in odplug.__all__[2:])
    stub = (Path(odplug.__file__).parent / "__init__.pyi").read_text()
    assert all(f"from odplug.api import {name} as {name}" in stub for name in odplug.API)
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        odplug.trian  # noqa: B018


def test_keywords_have_the_command_line_flags_names_and_defaults() -> None:
    from odplug.cli import tasks

    for function, task in ((api.import_dataset, tasks.import_), (api.train, tasks.model_train),
                           (api.evaluate, tasks.model_evaluate), (api.export, tasks.model_export),
                           (api.predict, tasks.model_predict),
                           (api.demo_dataset, tasks.demo_dataset)):
        ours = inspect.signature(function).parameters
        flags = inspect.signature(task.body).parameters
        for name in ours.keys() & flags.keys():
            assert str(ours[name].default) == str(flags[name].default) or (
                ours[name].default is inspect.Parameter.empty), (function.__name__, name)
        assert not {"c", "quiet"} & ours.keys()
        missing = flags.keys() - {"c", "quiet"} - ours.keys()
        assert not missing, f"{function.__name__} lacks the flags {sorted(missing)}"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: odplug.import_dataset("x", seed=-1), "seed=-1: give a whole number"),
    (lambda: odplug.import_dataset("x", split="random"), "split='random': use auto, source"),
    (lambda: odplug.import_dataset("x", verify="all"), "verify='all': use header or decode"),
    (lambda: odplug.import_dataset("x", ratios="a,b"), "--ratios 'a,b'"),
    (lambda: odplug.import_dataset(""), "give the dataset"),
    (lambda: odplug.train("r", steps=2.5), "steps=2.5: give a whole number"),
    (lambda: odplug.train("r", steps=0), "steps=0: give a whole number from 1"),
    (lambda: odplug.train("r", set="steps=3"), "write it as section.key=value"),
    (lambda: odplug.train("r", workers=True), "workers=True"),
    (lambda: odplug.train("r", config="missing.toml"), "config='missing.toml': no such file"),
    (lambda: odplug.train("missing-records"), "records='missing-records': no such folder"),
    (lambda: odplug.export("run", limit=-1), "limit=-1: give a whole number from 0"),
    (lambda: odplug.export("run", min_ratio="most"), "min_ratio='most': give 'targets'"),
    (lambda: odplug.export("run", min_ratio=0.9, verify=False), "needs the verification"),
    (lambda: odplug.predict("run", "video.mp4"), "source='video.mp4': no such file or folder"),
    (lambda: odplug.predict("run", ".", threshold=1.5), "threshold=1.5: give a number"),
    (lambda: odplug.predict("no-such-run", "."), "model='no-such-run': no such file"),
    (lambda: odplug.demo_dataset(size=8), "size=8: give a whole number from 32"),
])
def test_wrong_arguments_are_usage_errors_before_any_work(call, message: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as raised:
        call()
    assert message in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_paths_and_lists_may_be_python_values(demo_project: Path, tmp_path: Path) -> None:
    result = odplug.import_dataset(demo_project, tmp_path / "records", ratios=(8, 1, 1),
                                   split="ratio", rename={"circle": "round"},
                                   classes=["round", "square"])
    assert result.out == tmp_path / "records"
    assert set(result.label_map.names) == {"round", "square"}
    assert (tmp_path / "records" / "report.json").is_file()


def test_file_urls_are_the_local_paths_they_name(demo_project: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``file:///x`` as fsspec users write it: made a Path it was the relative folder
    ``file:/x``, so the import read nothing there or wrote under the current folder."""
    monkeypatch.chdir(tmp_path)
    result = odplug.import_dataset(f"file://{demo_project}", out=f"file://{tmp_path}/records")
    assert result.out == tmp_path / "records"
    assert (tmp_path / "records" / "report.json").is_file()
    made = odplug.demo_dataset(f"file://localhost{tmp_path}/demo", images=4, size=64)
    assert made == tmp_path / "demo"
    assert not (tmp_path / "file:").exists()


def test_wrong_arguments_are_still_pythons_own_error() -> None:
    """The file:// rule binds the arguments first: its TypeError named no function."""
    with pytest.raises(TypeError, match=r"demo_dataset\(\) takes"):
        odplug.demo_dataset("a", "b")  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"demo_dataset\(\) got an unexpected keyword"):
        odplug.demo_dataset(outt="x")  # type: ignore[call-arg]
