"""The tasks through the real command lines: ``inv`` in this checkout, ``odplug`` anywhere."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from odplug.quiet import VERBOSE_ENV, native_output_hidden
from tests.support.tools import BIN, ROOT, Run

NO_TENSORFLOW = """
import sys
from {module} import program
program.run({argv!r}, exit=False)
loaded = sorted(m for m in ("tensorflow", "keras", "pandas") if m in sys.modules)
print("HEAVY:", ",".join(loaded) or "none")
"""


@pytest.mark.parametrize("module,argv", [
    ("invoke.main", ["inv", "-l"]),
    ("invoke.main", ["inv", "plugins"]),
    ("odplug.cli", ["odplug", "--list"]),
    ("odplug.cli", ["odplug", "plugins"]),
])
def test_listing_tasks_and_plugins_imports_no_tensorflow(module: str, argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW.format(module=module, argv=argv)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY: none" in done.stdout


def test_every_task_and_argument_has_help() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import tasks
    finally:
        sys.path.remove(str(ROOT))
    names = tasks.ns.task_names
    assert {"data.import", "data.stats", "plugins", "demo.dataset", "bench.convert"} <= set(names)
    for name in names:
        task = tasks.ns[name]
        assert task.__doc__ and task.__doc__.strip(), name
        arguments = [p for p in inspect.signature(task.body).parameters if p != "c"]
        assert set(task.help) == set(arguments), name


def test_list_shows_one_line_help(run_inv) -> None:  # type: ignore[no-untyped-def]
    done = run_inv("-l")
    assert done.returncode == 0
    for name in ("data.import", "data.stats", "plugins", "demo.dataset", "bench.convert"):
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(name))
        assert len(line.split(name, 1)[1].strip()) > 10


def test_help_into_a_closed_pipe_is_no_traceback() -> None:
    """``odplug --help | head -1``: the reader leaves early; odplug ends as ``cat`` would
    (exit status 141, nothing on stderr), not with a BrokenPipeError traceback. The pipe's
    reading end is closed before odplug starts, so its first write finds it closed."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([BIN / "odplug", "--help"], stdout=write, stderr=subprocess.PIPE,
                              text=True, check=False)
    finally:
        os.close(write)
    assert done.stderr == "" and done.returncode == 141


def test_demo_import_and_stats_through_inv(run_inv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "demo"
    made = run_inv("demo.dataset", "--out", str(project), "--images", "12", "--size", "64")
    assert made.returncode == 0, made.stderr
    done = run_inv("data.import", "--source", str(project), "--out", str(tmp_path / "records"))
    assert done.returncode == 0, done.stderr
    assert "Imported" in done.stdout and "total" in done.stdout
    stats = run_inv("data.stats", "--folder", str(tmp_path / "records"), "--json")
    assert stats.returncode == 0, stats.stderr
    summary = json.loads(stats.stdout)
    assert sum(s["records"] for s in summary["splits"].values()) == 12
    assert summary["label_map"] == ["circle", "square", "triangle"]


def test_odplug_command_works_from_any_folder(run_inv, demo_project: Path,  # type: ignore[no-untyped-def]
                                              tmp_path: Path) -> None:
    version = run_inv("--version", program="odplug", cwd=tmp_path)
    assert version.returncode == 0 and "0.1.0" in version.stdout
    done = run_inv("data.import", "--source", str(demo_project), "--out", "records", "--quiet",
                   program="odplug", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert (tmp_path / "records" / "label_map.pbtxt").is_file()
    assert "bench.convert" not in run_inv("--list", program="odplug", cwd=tmp_path).stdout


@pytest.mark.parametrize("args,message,status", [
    (["data.import", "--source", "/no/such/folder"], "/no/such/folder: no such file or folder",
     2),
    (["data.import"], "give the dataset with --source", 2),
    (["data.import", "--source", ".", "--split", "bogus"], "--split 'bogus'", 2),
    (["data.import", "--source", ".", "--ratios", "a,b"], "--ratios 'a,b'", 2),
    (["data.import", "--source", ".", "--to", "tfrecods"], "Did you mean 'tfrecord'", 2),
    (["data.import", "--source", "/no/such/folder", "--format", "tf_csv"],
     "/no/such/folder: no such file or folder", 2),
    (["data.import", "--source", "docs"], "not a dataset format odplug recognises", 1),
    (["data.stats", "--folder", "/no/such/folder"], "no such folder", 2),
    (["data.stats", "--folder", "docs"], "no TFRecord files", 1),
    (["data.import", "--source", ".", "--ratios", "nan,1,1"], "--ratios 'nan,1,1'", 2),
    (["data.import", "--source", ".", "--ratios", "inf,1"], "--ratios 'inf,1'", 2),
    (["data.import", "--source", ".", "--shards", "abc"], "--shards 'abc': give a whole number",
     2),
    (["data.import", "--source", ".", "--shards", "-1"], "--shards '-1': give a whole number",
     2),
    (["data.import", "--source", ".", "--workers", "-3"], "--workers '-3'", 2),
    (["data.import", "--source", ".", "--seed", "1.5"], "--seed '1.5'", 2),
    (["data.import", "--source", ".", "--rename", "car"], "--rename 'car': write it as old=new",
     2),
    (["data.import", "--source", ".", "--out", "README.md"], "README.md is a file, not a folder",
     2),
    (["data.import", "--source", ".", "--out", "README.md/x"], "README.md is a file", 2),
    (["data.import", "--source", ".", "--label-map", "odplug"], "--label-map 'odplug': is a fo",
     2),
    (["demo.dataset", "--images", "many"], "--images 'many'", 2),
    (["demo.dataset", "--size", "8"], "--size '8': give a whole number from 32", 2),
    (["demo.dataset", "--out", "README.md"], "--out 'README.md'", 2),
    (["model.train", "--records", ".", "--steps", "-5"], "--steps '-5'", 2),
    (["model.train", "--records", ".", "--config", "odplug"], "--config 'odplug': is a folder",
     2),
    (["model.train", "--records", ".", "--set", "train.steps=" + "[" * 3000],
     "nested too deeply", 2),
    (["model.train", "--records", ".", "--set", "steps"], "--set 'steps': write it as", 2),
    (["model.config", "--trainer", "sdd"], "unknown trainer 'sdd'. Did you mean 'ssd'", 2),
    (["model.evaluate", "--model", "/no/such/run"], "/no/such/run: not a run folder", 2),
    (["model.predict", "--model", ".", "--source", ".", "--threshold", "nan"],
     "--threshold 'nan'", 2),
    (["model.export", "--model", ".", "--limit", "x"], "--limit 'x'", 2),
    (["model.export", "--model", ".", "--min-ratio", "abc"], "--min-ratio 'abc': give 'targets'",
     2),
    (["model.export", "--model", ".", "--to", "tfjz"], "unknown exporter 'tfjz'", 2),
    (["model.export", "--model", ".", "--to", "tflite", "--quantize", "int9"],
     "--quantize 'int9' is not a variant of tflite", 2),
    (["pipeline", "--min-ratio", "1.5"], "--min-ratio '1.5': give 'targets' or a number", 2),
    (["model.config", "--out", "odplug"], "--out 'odplug': is a folder", 2),
    (["pipeline", "--steps", "1e3"], "--steps '1e3'", 2),
    (["pipeline", "--config", "odplug"], "--config 'odplug'", 2),
    (["bench.convert", "--images", "abc"], "--images 'abc': give a whole number", 2),
    (["bench.train", "--steps", "0"], "--steps '0': give a whole number from 1", 2),
    (["bench.train", "--workers", "1"], "bench.train --workers 1: give 2 or more", 2),
    (["bench.tfjs"], "bench.tfjs needs --model: a TF.js export folder", 2),
    (["bench.tfjs", "--model", "odplug"], "odplug: no model.json", 1),
])
def test_user_errors_are_one_line_without_traceback(run_inv, args: list[str],  # type: ignore[no-untyped-def]
                                                    message: str, status: int) -> None:
    """One line each; exit status 2 for what is wrong on the command line itself, 1 for what
    only doing the work finds."""
    done = run_inv(*args)
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("odplug: error:"), done.stderr
    assert message in lines[0]


@pytest.mark.parametrize("program,args,message", [
    ("odplug", ["data.imprt"], "odplug: error: no task 'data.imprt'. Did you mean "
     "'data.import'?"),
    ("inv", ["data.imprt"], "odplug: error: no task 'data.imprt'. Did you mean 'data.import'?"),
    ("inv", ["data.import", "--sorce", "x"], "odplug: error: data.import has no flag '--sorce'. "
     "Did you mean '--source'?"),
])
def test_invokes_own_parse_errors_are_usage_errors(run_inv, program: str, args: list[str],  # type: ignore[no-untyped-def]
                                                   message: str) -> None:
    """The programs themselves (tests/unit/test_cli_parser.py has the other cases)."""
    done = run_inv(*args, program=program)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == message


def test_inv_shows_a_tasks_help_with_h(run_inv) -> None:  # type: ignore[no-untyped-def]
    done = run_inv("data.import", "-h")
    assert done.returncode == 0, done.stderr
    assert "-s STRING, --source=STRING" in done.stdout and "--shards=INT" in done.stdout


def _run_folder(path: Path, **changes: object) -> Path:
    """A run description of a run that never finished, as the ssd trainer leaves one."""
    from odplug.run import RunInfo

    info = RunInfo(run_dir=path, trainer="ssd", records=path.parent / "records",
                   label_map=path / "label_map.pbtxt", saved_model=path / "saved_model",
                   complete=False, resumable=True)
    info.write()
    if changes:
        document = json.loads(info.path.read_text())
        info.path.write_text(json.dumps({**document, **changes}))
    return path


@pytest.mark.parametrize("task,model,message", [
    ("export", "unfinished", "the run is not complete (no final SavedModel yet): continue it "
     "with model.train --resume"),
    ("evaluate", "newer schema", "schema 2 is not one this odplug reads (1)"),
    ("evaluate", "bare", "a SavedModel folder does not say which records it was trained on: "
     "give --records"),
    ("export", "bare", "not a run folder, so no test split is known: give --records or "
     "--no-verify"),
    ("predict", "empty", "not a run folder (no run.json) and not a SavedModel folder"),
])
def test_model_tasks_know_a_run_by_its_description_only(run_inv, tmp_path: Path, task: str,  # type: ignore[no-untyped-def]
                                                        model: str, message: str) -> None:
    folders = {"unfinished": lambda p: _run_folder(p),
               "newer schema": lambda p: _run_folder(p, schema=2),
               "bare": lambda p: p / "saved_model.pb",
               "empty": lambda p: p}
    path = tmp_path / "model"
    path.mkdir()
    made = folders[model](path)
    if made.suffix == ".pb":
        made.write_bytes(b"")
    extra = {"export": ["--to", "tflite"], "predict": ["--source", str(path)], "evaluate": []}
    done = run_inv(f"model.{task}", "--model", str(path), *extra[task])
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("odplug: error:") and message in last, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "nothing written"


# A quiet console: TensorFlow's own output hidden unless asked for, odplug's warnings kept.

# The console as a command sets it up, then what a task does: import TensorFlow, run an op (the
# first op sets up the devices: cuInit), and log a warning of odplug's own.
AFTER_THE_COMMAND_LINE = """
import logging, os, sys
from {module} import program
program.run({argv!r}, exit=False)
import tensorflow as tf
total = float(tf.reduce_sum(tf.constant([1.0, 2.0])))
logging.getLogger("odplug_builtins.trainer.train").warning("records have no val split")
logging.getLogger("tensorflow").warning("5 out of the last 5 calls triggered retracing")
print("TOTAL", total, os.environ.get("TF_CPP_MIN_LOG_LEVEL"), os.environ.get({verbose!r}))
"""


def _fresh_env(**extra: str) -> dict[str, str]:
    """This environment without the console settings this test process may have picked up."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", VERBOSE_ENV)}
    return {**env, **extra}


def _after_the_command_line(module: str, argv: list[str], **env: str
                            ) -> subprocess.CompletedProcess[str]:
    code = AFTER_THE_COMMAND_LINE.format(module=module, argv=argv, verbose=VERBOSE_ENV)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=_fresh_env(**env))


@pytest.mark.parametrize("module,argv", [
    ("odplug.cli", ["odplug", "--list"]),
    ("invoke.main", ["inv", "--list"]),
])
def test_tensorflow_is_quiet_after_the_command_line(module: str, argv: list[str]) -> None:
    done = _after_the_command_line(module, argv)
    assert done.returncode == 0, done.stderr
    assert "TOTAL 3.0 3 None" in done.stdout
    assert done.stderr == "odplug: warning: records have no val split\n", done.stderr


@pytest.mark.parametrize("module,argv,env", [
    ("odplug.cli", ["odplug", "--verbose", "--list"], {}),
    ("odplug.cli", ["odplug", "--list"], {VERBOSE_ENV: "1"}),
    ("invoke.main", ["inv", "--list"], {VERBOSE_ENV: "1"}),
], ids=["odplug-flag", "odplug-env", "inv-env"])
def test_verbose_shows_what_tensorflow_prints(module: str, argv: list[str],
                                              env: dict[str, str]) -> None:
    done = _after_the_command_line(module, argv, **env)
    assert done.returncode == 0, done.stderr
    assert "TOTAL 3.0 None 1" in done.stdout, "TensorFlow's own log level is left alone"
    assert "odplug: warning: records have no val split\n" in done.stderr
    assert "tensorflow: warning: 5 out of the last 5 calls" in done.stderr


def test_a_users_own_tensorflow_log_level_wins() -> None:
    done = _after_the_command_line("odplug.cli", ["odplug", "--list"], TF_CPP_MIN_LOG_LEVEL="1")
    assert done.returncode == 0, done.stderr
    assert "TOTAL 3.0 1 None" in done.stdout


def test_native_output_is_hidden_unless_verbose(capfd: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    with native_output_hidden():
        os.write(2, b"from C++\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"

    monkeypatch.setenv(VERBOSE_ENV, "1")
    with native_output_hidden():
        os.write(2, b"from C++\n")
    assert capfd.readouterr().err == "from C++\n"


@pytest.mark.slow
def test_readme_pipeline_prints_only_odplugs_words(raccoon: Path, tmp_path: Path, run_inv: Run,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's pipeline, tiny, on a dataset without a val split, int8 included.

    On stderr, only odplug's own lines: no TensorFlow, absl or converter output (C++ log
    lines, the oneDNN and CUDA notices, LiteRT's delegate notice, the calibrator's print).
    Then the verification loop again with everything shown: TensorFlow does not retrace.
    """
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    tiny = ("model.input_size=96,model.levels=[4,5],model.head_channels=32,train.batch_size=4,"
            "train.steps=2,train.warmup_steps=1,train.xla=false,train.mixed_precision=false")
    out = tmp_path / "out"
    done = run_inv("pipeline", "--source", str(raccoon), "--format", "tf_csv", "--out", str(out),
                   "--set", tiny,
                   "--to", "tflite", "--quantize", "float32,int8", program="odplug")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verify: done" in done.stdout
    lines = done.stderr.splitlines()
    assert [line for line in lines if not line.startswith("odplug: ")] == [], done.stderr
    assert any("has no val split" in line for line in lines), done.stderr
    assert "retracing" not in done.stdout + done.stderr

    verbose = run_inv("--verbose", "model.export", "--model", str(out / "run"), "--to", "tflite",
                      "--quantize", "float32", "--out", str(tmp_path / "again"),
                      program="odplug")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "retracing" not in verbose.stdout + verbose.stderr, "the verification loop retraces"


def _unreadable(path: Path):  # type: ignore[no-untyped-def]
    """A stand-in for a folder that cannot be read (the tests run as root, where chmod 000
    does not bite): os.scandir raises PermissionError for `path` and anything below it."""
    real = os.scandir

    def scandir(target=".", *args):  # type: ignore[no-untyped-def]
        if str(target).startswith(str(path)):
            raise PermissionError(13, "Permission denied", str(target))
        return real(target, *args)

    return scandir


def _task_error(task_name: str, **arguments: object) -> str:
    """The one line a task body exits with, called in this process (so monkeypatch reaches it)."""
    from invoke import Context
    from invoke.exceptions import Exit

    from odplug.cli.tasks import ns

    with pytest.raises(Exit) as caught:
        ns[task_name](Context(), **arguments)
    assert caught.value.code != 0
    message = str(caught.value.message)
    assert "\n" not in message and message.startswith("odplug: error: ")
    return message


@pytest.mark.parametrize("format", [None, "supervisely"])
def test_an_unreadable_dataset_folder_is_one_line_naming_it(
        demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        format: str | None) -> None:
    monkeypatch.setattr(os, "scandir", _unreadable(demo_copy))
    message = _task_error("data.import", source=str(demo_copy), out=str(tmp_path / "out"),
                          quiet=True, workers=1, format=format)
    assert message.startswith(f"odplug: error: {demo_copy}") and "Permission denied" in message


def test_a_full_disk_is_one_line_naming_the_output(demo_copy: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    out = tmp_path / "out"
    message = _task_error("data.import", source=str(demo_copy), out=str(out), quiet=True,
                          workers=1)
    assert message == (f"odplug: error: {out}: No space left on device; the import failed and "
                       "the folder is unchanged")


def test_a_file_system_error_anywhere_in_a_task_names_the_path() -> None:
    from odplug.cli.console import user_errors

    @user_errors
    def body() -> None:
        Path("/proc/version/below").read_text()

    from invoke.exceptions import Exit

    with pytest.raises(Exit) as caught:
        body()
    assert caught.value.message == "odplug: error: /proc/version/below: Not a directory"


def test_ctrl_c_that_left_something_to_know_says_it_instead_of_the_usual_line() -> None:
    from invoke.exceptions import Exit

    from odplug.cli.console import user_errors
    from odplug.cli.interrupt import INTERRUPTED, MESSAGE
    from odplug.errors import Interrupted

    @user_errors
    def body(error: KeyboardInterrupt) -> None:
        raise error

    for error, said in ((KeyboardInterrupt(), MESSAGE),
                        (Interrupted("odplug: interrupted while publishing s3://b/x: ..."),
                         "odplug: interrupted while publishing s3://b/x: ...")):
        with pytest.raises(Exit) as caught:
            body(error)
        assert (caught.value.message, caught.value.code) == (said, INTERRUPTED)


def _example(encoded: bytes, width: int, height: int) -> bytes:
    from odplug.data.protos import Example

    example = Example()
    feature = example.features.feature
    feature["image/encoded"].bytes_list.value.append(encoded)
    feature["image/width"].int64_list.value.append(width)
    feature["image/height"].int64_list.value.append(height)
    return example.SerializeToString()


def test_stats_names_each_record_whose_image_a_trainer_cannot_use(tmp_path: Path,
                                                                  run_inv: Run) -> None:
    import io

    from PIL import Image

    from odplug.data.stats import folder_stats
    from odplug.data.tfrecord import write_record

    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buffer, "PNG")
    png = buffer.getvalue()
    path = tmp_path / "bad.record"
    with path.open("wb") as handle:
        for record in (_example(png, 8, 6), _example(b"", 8, 6),
                       _example(b"\x89PNG garbage" * 3, 8, 6), _example(png, 16, 6)):
            write_record(handle, record)
    problems = folder_stats(tmp_path)["problems"]
    assert [(p["file"], p["record"]) for p in problems] == [(str(path), n) for n in (1, 2, 3)]
    reasons = [p["reason"] for p in problems]
    assert reasons[0] == "image/encoded is empty"
    assert reasons[1] == "image/encoded is not an image (no format Pillow knows)"
    assert reasons[2] == "image/encoded is a 8x6 PNG but the record declares 16x6"
    done = run_inv("data.stats", "--folder", str(tmp_path))
    assert done.returncode == 1
    assert f"{path} record 1: image/encoded is empty" in done.stdout
    assert done.stderr.strip() == (f"odplug: error: 3 record(s) with an unusable image, the "
                                   f"first {path} record 1: image/encoded is empty")
