"""The command line as people type it, parsed in this process: help on every task, short flags
that mean one thing, "did you mean", repeatable --set, typed help, and the argument checks that
answer before TensorFlow is imported (this tier fails a test that imports it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke import Collection, Program
from invoke.parser import ParserContext

from odplug.cli import OdplugProgram
from odplug.cli.overrides import parse_overrides
from odplug.cli.parsing import parse_like_odplug
from odplug.cli.tasks import SHORT_FLAGS
from tests.support.tools import ROOT


@pytest.fixture(scope="module")
def ns() -> Iterator[Collection]:
    """Every task `inv` has in this checkout: odplug's and the benchmarks of tasks.py."""
    sys.path.insert(0, str(ROOT))
    try:
        import tasks
    finally:
        sys.path.remove(str(ROOT))
    yield tasks.ns


def run(ns: Collection, *argv: str, program: Program | None = None) -> int:
    """`argv` through a fresh odplug program on `ns`; its exit status."""
    program = program or OdplugProgram(namespace=ns, name="odplug", binary="odplug")
    with pytest.raises(SystemExit) as exited:
        program.run([program.binary, *argv])
    return int(exited.value.code or 0)


def parsed(ns: Collection, *argv: str) -> ParserContext:
    """The task context `argv` parses into, without running the task."""
    program = OdplugProgram(namespace=ns, name="odplug", binary="odplug")
    program.create_config()
    program.parse_core(["odplug", *argv])
    program.parse_collection()
    program.parse_tasks()
    return program.tasks[0]


def test_h_and_help_show_every_tasks_help(ns: Collection,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Twice each, in one process: invoke used up a task's help texts on the first parse."""
    for name in [*ns.task_names] * 2:
        for flag in ("-h", "--help"):
            assert run(ns, name, flag) == 0, name
            shown = capsys.readouterr().out
            assert shown.startswith(f"Usage: odplug [--core-opts] {name} "), (name, shown)
            for text in ns[name].help.values():
                assert text.split()[0] in shown, (name, text)


def test_h_alone_is_the_programs_help(ns: Collection, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(ns, "-h") == 0
    assert "Core options:" in capsys.readouterr().out


def test_short_flags_mean_one_thing_in_every_task(ns: Collection) -> None:
    """Before, -h was --shards in data.import, and -t meant --to, --steps, --trainer or
    --threshold depending on the task."""
    contexts = {context.name: context for context in ns.to_contexts()}
    for context in contexts.values():
        for argument in context.args.values():
            assert argument.nicknames == tuple(SHORT_FLAGS.get(argument.name, "")), (
                context.name, argument.names)
    assert {"-s", "-o"} <= set(contexts["data.import"].flags.aliases)
    assert "-h" not in contexts["data.import"].flags
    assert "-m" in contexts["model.predict"].flags


@pytest.mark.parametrize("argv,line", [
    (["data.imprt"], "no task 'data.imprt'. Did you mean 'data.import'?"),
    (["--help", "data.imprt"], "no task 'data.imprt'. Did you mean 'data.import'?"),
    (["zzz"], "no task 'zzz'. --list shows every task."),
    (["data.import", "--sorce", "x"], "data.import has no flag '--sorce'. Did you mean "
     "'--source'?"),
    (["model.export", "--model", ".", "--no-verfy"], "model.export has no flag '--no-verfy'. "
     "Did you mean '--no-verify'?"),
    (["model.predict", "-t", "0.5"], "model.predict has no flag '-t'. Did you mean "
     "'--threshold'?"),
    (["data.import", "--zzzzzz"], "data.import has no flag '--zzzzzz'. data.import -h lists "
     "its flags."),
    (["data.import", "--source"], "data.import: --source needs a value"),
    (["--list", "dta"], "--list: no collection 'dta'. Did you mean 'data'?"),
])
def test_a_wrong_command_line_is_one_line_naming_what_was_meant(
        ns: Collection, capsys: pytest.CaptureFixture[str], argv: list[str], line: str) -> None:
    assert run(ns, *argv) == 2
    assert capsys.readouterr().err == f"odplug: error: {line}\n"


def test_inv_answers_as_odplug_does(ns: Collection, capsys: pytest.CaptureFixture[str]) -> None:
    """What tasks.py does to invoke's own program: its parse errors and task help as odplug's."""
    inv = Program(namespace=ns, name="inv", binary="inv")
    parse_like_odplug(inv)
    assert run(ns, "data.imprt", program=inv) == 2
    assert capsys.readouterr().err == ("odplug: error: no task 'data.imprt'. Did you mean "
                                       "'data.import'?\n")
    assert run(ns, "model.predict", "-h", program=inv) == 0
    assert "--threshold=FLOAT" in capsys.readouterr().out


@pytest.mark.parametrize("task,flags", [
    ("model.predict", ["-m STRING, --model=STRING", "--threshold=FLOAT"]),
    ("data.import", ["-s STRING, --source=STRING", "--shards=INT", "--quiet"]),
    ("model.train", ["--set=STRING", "--steps=INT", "--workers=INT"]),
    ("model.export", ["--[no-]verify", "--limit=INT"]),
    ("bench.train", ["--set=STRING", "--[no-]full"]),
])
def test_help_shows_the_type_of_every_value(ns: Collection, capsys: pytest.CaptureFixture[str],
                                            task: str, flags: list[str]) -> None:
    assert run(ns, task, "-h") == 0
    shown = capsys.readouterr().out
    for flag in flags:
        assert f"  {flag}  " in shown, (flag, shown)


@pytest.mark.parametrize("task", ["model.train", "pipeline", "bench.train"])
def test_set_may_be_repeated(ns: Collection, task: str) -> None:
    context = parsed(ns, task, "--set", "a.b=1", "--set=c.d=[1,2],e.f=x")
    assert context.args.set.value == ["a.b=1", "c.d=[1,2],e.f=x"]
    assert parse_overrides(context.args.set.value) == {"a.b": 1, "c.d": [1, 2], "e.f": "x"}
    assert parsed(ns, task).args.set.value == []


def test_steps_left_out_is_the_trainers_default(ns: Collection) -> None:
    assert parsed(ns, "model.train", "--records", ".").args.steps.value is None
    assert parsed(ns, "pipeline", "--steps", "5").args.steps.value == "5"


@pytest.mark.parametrize("argv,status,line", [
    (["model.train", "--records", "{tmp}", "--steps", "0"], 2,
     "--steps '0': give a whole number from 1 to 1000000000; leave it out for the trainer's "
     "default"),
    (["pipeline", "--steps", "0"], 2, "--steps '0': give a whole number from 1 to 1000000000; "
     "leave it out for the trainer's default"),
    (["model.train", "--records", "/no/such/records"], 2,
     "--records '/no/such/records': no such folder"),
    (["model.train", "--records", "{tmp}/file"], 2,
     "--records '{tmp}/file': is a file; give a folder"),
    (["model.train", "--records", "{tmp}"], 1, "{tmp}: no label_map.pbtxt; give a folder "
     "written by data.import"),
    (["model.train", "--records", "{tmp}", "--config", "/no/such.toml"], 2,
     "--config '/no/such.toml': no such file"),
    (["model.predict", "-m", "{tmp}", "-s", "{tmp}/video.mp4"], 2,
     "--source '{tmp}/video.mp4': no such file or folder"),
])
def test_model_tasks_check_their_arguments_before_tensorflow(
        ns: Collection, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str],
        status: int, line: str) -> None:
    (tmp_path / "file").write_text("")
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert run(ns, *argv) == status
    assert capsys.readouterr().err == f"odplug: error: {line.format(tmp=tmp_path)}\n"


def test_file_urls_are_the_local_paths_they_name(ns: Collection, demo_project: Path,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``--out file:///x`` wrote into ``./file:/x`` and said it wrote ``file:/x``; ``--source
    file:///x`` was "no such file or folder" for a folder that is there."""
    monkeypatch.chdir(tmp_path)
    program = OdplugProgram(namespace=ns, name="odplug", binary="odplug")
    program.run(["odplug", "data.import", "--source", f"file://{demo_project}",
                 "--out", f"FILE://{tmp_path}/records", "--no-pictures"])  # returns: it worked
    assert (tmp_path / "records" / "report.json").is_file()
    assert not (tmp_path / "file:").exists() and not (tmp_path / "FILE:").exists()
