"""The docs say only what is true of this checkout: every ``odplug ...`` and ``inv ...`` command
in README.md and docs/**/*.md parses against the real tasks, every relative link and every
repository path they name exists, the README's commands are CI's, the times the README
states are those of the log it cites, and the numbers the docs take from the code (targets,
calibration size, the demo's size) are the code's.

Commands are parsed in this process by the programs' own parser (as
tests/unit/test_cli_parser.py drives it): the task exists, every flag is one of its flags, a
flag that takes a value has one and a whole-number flag's value is a whole number. Nothing is
run. In a command, ``...`` stands for what is left out and UPPER-CASE words or ``<words>`` for
values the reader fills in.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from invoke import Collection, Program
from invoke.exceptions import Exit, ParseError

from odplug.cli import OdplugProgram
from odplug.cli.parsing import parse_like_odplug
from tests.support.tools import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
REPO_FOLDERS = {".ci", "bench", "dockerfiles", "docs", "odplug", "plugins", "tests"}
"""A path in inline code whose first part is one of these names a file of this repository."""
GENERATED = ("bench/work/",)
"""Paths the docs name that commands write (ignored by git), not files of the repository."""
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.M | re.S)
INLINE = re.compile(r"(?<!`)`(?P<code>[^`\n]+)`(?!`)")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*|<[^>]+>.*|.*<[^>]+>")


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    program: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.program} {shlex.join(self.argv)}"


def _relative(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _prose(text: str) -> str:
    """`text` with its fenced blocks blanked (line numbers kept)."""
    return FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _shell_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each command line of the shell blocks of a markdown text, continuations joined."""
    for block in FENCE.finditer(text):
        if block["lang"] not in SHELL_BLOCKS:
            continue
        start = _line(text, block.start("body"))
        body = block["body"].replace("\\\n", "  \n")
        for index, line in enumerate(body.splitlines()):
            yield start + index, line.replace("  \n", " ")


def _commands_in(doc: str, line: int, shell: str) -> Iterator[Command]:
    """The odplug and inv commands of one shell line (env assignments, `&&` chains, `docker
    run IMAGE odplug ...`, `[--optional]` flags and redirections understood)."""
    tokens = shlex.split(shell.replace("[", " ").replace("]", " "), comments=True)
    segment: list[str] = []
    redirected = False
    for token in [*tokens, "&&"]:
        if token not in ("&&", "||", ";", "|"):
            redirected = redirected or (token == "<" or re.match(r"\d?>", token) is not None)
            if not redirected:
                segment.append(token)
            continue
        redirected = False
        while segment and re.fullmatch(r"[A-Z_]+=\S*", segment[0]):
            segment.pop(0)
        if segment and segment[0] == "docker":
            segment = segment[segment.index("odplug"):] if "odplug" in segment else []
        if segment and Path(segment[0]).name in ("odplug", "inv") and len(segment) > 1:
            yield Command(doc, line, Path(segment[0]).name, tuple(segment[1:]))
        segment = []


def doc_commands() -> list[Command]:
    commands = []
    for doc in DOCS:
        text, name = doc.read_text(), _relative(doc)
        for line, shell in _shell_lines(text):
            commands += _commands_in(name, line, shell)
        prose = _prose(text)
        for span in INLINE.finditer(prose):
            if re.match(r"(\S+=\S*\s+)*(\.venv/bin/)?(odplug|inv) ", span["code"]):
                commands += _commands_in(name, _line(prose, span.start()), span["code"])
    return commands


@pytest.fixture(scope="module")
def namespaces() -> dict[str, Collection]:
    """`odplug`'s tasks, and `inv`'s: the same plus this checkout's benchmarks."""
    sys.path.insert(0, str(ROOT))
    try:
        import tasks
    finally:
        sys.path.remove(str(ROOT))
    from odplug.cli.tasks import ns

    return {"odplug": ns, "inv": tasks.ns}


def _program(name: str, namespaces: dict[str, Collection]) -> Program:
    if name == "odplug":
        return OdplugProgram(namespace=namespaces["odplug"], name="odplug", binary="odplug")
    program = Program(namespace=namespaces["inv"], name="inv", binary="inv")
    parse_like_odplug(program)
    return program


def _with_elisions_filled(argv: tuple[str, ...], ns: Collection) -> list[str]:
    """`argv` with each ``...`` dropped, or made a value where it stands for one."""
    valued = {flag for context in ns.to_contexts()
              for flag, argument in context.flags.items() if argument.takes_value}
    filled: list[str] = []
    for token in argv:
        if token in ("...", "…"):
            if filled and filled[-1] in valued:
                filled.append("VALUE")
            continue
        filled.append(token)
    return filled


def problem(command: Command, namespaces: dict[str, Collection]) -> str | None:
    """Why `command` would not parse as written, or None."""
    program = _program(command.program, namespaces)
    argv = _with_elisions_filled(command.argv, namespaces[command.program])
    if not argv or argv[0].endswith(".*") or PLACEHOLDER.fullmatch(argv[0]):
        return None  # `odplug TASK -h`, `inv bench.*`: any task
    program.create_config()
    try:
        program.parse_core([command.program, *argv])
        program.parse_collection()
        program.parse_tasks()
    except Exit as error:
        return None if error.code == 0 else str(error.message)
    except ParseError as error:
        return str(error)
    for context in program.tasks:
        for argument in context.args.values():
            value = argument.value
            if not (argument.takes_value and argument.got_value) or argument.kind is list:
                continue
            if str(value).startswith("-"):
                return f"{context.name}: --{argument.name} is followed by {value!r}, not a value"
            if (argument.kind is int and not re.fullmatch(r"\d+", str(value))
                    and not PLACEHOLDER.fullmatch(str(value))):
                return f"{context.name}: --{argument.name} {value!r} is not a whole number"
        if context.name == "docker.run" and context.args.command.got_value:
            inner = _commands_in(command.doc, command.line, context.args.command.value)
            for nested in inner:
                if why := problem(nested, namespaces):
                    return f"in --command: {why}"
    return None


COMMANDS = doc_commands()


def test_the_docs_have_commands_to_check() -> None:
    """The extraction itself works: the README's pipeline and the guide's commands are found."""
    found = {(c.doc, c.program, c.argv[:1]) for c in COMMANDS}
    assert ("README.md", "inv", ("pipeline",)) in found
    assert ("docs/guide/import.md", "odplug", ("data.import",)) in found
    assert len(COMMANDS) > 100


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_command_in_the_docs_parses(command: Command,
                                          namespaces: dict[str, Collection]) -> None:
    assert problem(command, namespaces) is None, (str(command), problem(command, namespaces))


@pytest.mark.parametrize("argv,message", [
    (("model.export", "-t", "tflite,tfjs", "-i", "targets"), "no flag '-t'"),
    (("bench.train",), "no task 'bench.train'"),
    (("model.train", "--records"), "--records needs a value"),
    (("model.train", "--records", "--run", "runs/x"), "--records needs a value"),
    (("pipeline", "--steps", "1e3"), "'1e3' is not a whole number"),
    (("docker.run", "--command", "odplug model.trian"), "in --command: "),
])
def test_a_wrong_command_is_caught(argv: tuple[str, ...], message: str,
                                   namespaces: dict[str, Collection]) -> None:
    """What the check above would say of a stale or mistyped command."""
    why = problem(Command("doc.md", 1, "odplug", argv), namespaces)
    assert why is not None and message in why, why


def test_placeholders_and_elisions_parse(namespaces: dict[str, Collection]) -> None:
    for shell in ("ODPLUG_VERBOSE=1 inv ...", "odplug --verbose ...",
                  "inv model.train --records ... --set train.steps=3000",
                  "odplug model.train --records R --run RUN --resume --steps N",
                  "odplug model.edgetpu-check --model some.tflite [--strict]",
                  "odplug data.import -h", "odplug TASK -h", "inv bench.*",
                  "odplug model.config > my.toml"):
        for command in _commands_in("doc.md", 1, shell):
            assert problem(command, namespaces) is None, shell


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.*)$", _prose(doc.read_text()), re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=_relative)
def test_every_relative_link_leads_somewhere(doc: Path) -> None:
    missing = []
    prose = _prose(doc.read_text())
    for link in LINK.finditer(prose):
        target = link["target"]
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        where = (doc.parent / path).resolve() if path else doc
        if not where.exists():
            missing.append(f"line {_line(prose, link.start())}: {target}")
        elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
            missing.append(f"line {_line(prose, link.start())}: {target} (no such heading)")
    assert not missing, f"{_relative(doc)}: {missing}"


def _repository_paths(doc: Path) -> Iterator[tuple[int, str]]:
    prose = _prose(doc.read_text())
    for span in INLINE.finditer(prose):
        code = span["code"]
        if not re.fullmatch(r"[\w.-]+/[\w./:-]*", code) or code.split("/")[0] not in REPO_FOLDERS:
            continue
        if not code.startswith(GENERATED):
            yield _line(prose, span.start()), code


@pytest.mark.parametrize("doc", DOCS, ids=_relative)
def test_every_repository_path_named_exists(doc: Path) -> None:
    """`plugins/trainer/batchnorm.py`, `tests/e2e/test_tasks.py::test_name` (the test too)."""
    missing = []
    for line, code in _repository_paths(doc):
        path, _, test = code.partition("::")
        file = ROOT / path
        if not file.exists():
            missing.append(f"line {line}: {code}")
        elif test and not re.search(rf"^def {re.escape(test)}\(", file.read_text(), re.M):
            missing.append(f"line {line}: {code} (no such test)")
    assert not missing, f"{_relative(doc)}: {missing}"


def _fenced(text: str) -> list[str]:
    return [block["body"].strip() for block in FENCE.finditer(text)]


def test_the_readmes_two_commands_are_ci_and_the_set_up() -> None:
    """On a fresh machine, the README's first command runs the main job and its second the
    whole suite, which is exactly what CI runs."""
    blocks = _fenced((ROOT / "README.md").read_text())
    assert "bash setup.sh && .venv/bin/inv pipeline" in blocks
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == "bash setup.sh && .venv/bin/pytest"
    assert ci in blocks


def test_the_readmes_pipeline_time_is_the_logs() -> None:
    """The README states the pipeline's time as measured, with the date, and cites the log:
    the seconds it gives are the log's `total:` line."""
    readme = (ROOT / "README.md").read_text()
    cited = re.search(r"\]\((docs/measurements/pipeline-(\d{4}-\d{2}-\d{2})\.log)\)", readme)
    assert cited, "the README cites no pipeline log"
    log = (ROOT / cited[1]).read_text()
    total = re.search(r"^total: (\d+) s$", log, re.M)
    assert total and "verify: done" in log, "the log is not a finished pipeline"
    seconds = int(total[1])
    stage = {(m[2], m[3]): int(m[1])
             for m in re.finditer(r"^\[ *(\d+) s\] (\w+): (running|done)$", log, re.M)}
    said = " ".join(readme.split())
    assert f"on {cited[2]}" in said
    assert f"took {seconds} s ({seconds // 60} min {seconds % 60} s)" in said
    assert f"training was {stage['train', 'done'] - stage['train', 'running']} s" in said
    assert (f"exporting and verifying {stage['verify', 'done'] - stage['export', 'running']} s"
            in said)


def _constant(path: str, name: str) -> object:
    """A module-level constant of the repository's `path`, read without importing it (the
    exporters' modules import TensorFlow)."""
    for node in ast.parse((ROOT / path).read_text()).body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == name):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} has no {name}")


@pytest.mark.parametrize("doc,path,name,said", [
    ("docs/guide/export.md", "odplug/exports/table.py", "FLOAT_TARGET",
     "float exports at least {:.1%}"),
    ("docs/guide/export.md", "odplug/exports/table.py", "EIGHT_BIT_TARGET",
     "int8 at least {:.0%}"),
    ("docs/guide/export.md", "plugins/tflite/export.py", "CALIBRATION_IMAGES",
     "Calibration reads {} records"),
    ("docs/guide/export.md", "plugins/tflite/export.py", "PER_CHANNEL_MARGIN",
     "better by more than {}"),
    ("README.md", "odplug/data/demo.py", "IMAGES", "demo/supervisely: {} images"),
    ("docs/guide/import.md", "odplug/pictures/dataset.py", "POINTS_PER_SPLIT",
     "drawn from a random sample of {:,}"),
])
def test_the_numbers_the_docs_take_from_the_code_are_the_codes(doc: str, path: str, name: str,
                                                                said: str) -> None:
    text = " ".join((ROOT / doc).read_text().split())
    assert said.format(_constant(path, name)) in text, (doc, name)


@pytest.mark.parametrize("page,task", [
    ("pipeline.md", "pipeline"), ("import.md", "data.import"), ("train.md", "model.train"),
    ("evaluate.md", "model.evaluate"), ("export.md", "model.export"),
    ("predict.md", "model.predict"),
])
def test_each_guide_page_names_every_flag_of_its_task(page: str, task: str,
                                                      namespaces: dict[str, Collection]) -> None:
    """A flag added to a task is added to its page of the guide too."""
    text = (ROOT / "docs" / "guide" / page).read_text()
    context = next(c for c in namespaces["odplug"].to_contexts() if c.name == task)
    flags = {name.replace("_", "-") for name in context.args}
    missing = [f for f in sorted(flags) if f"`--{f}" not in text and f"`--no-{f}" not in text]
    assert not missing, f"docs/guide/{page} does not name {missing}"


def test_output_quoted_from_a_measurement_log_is_the_logs() -> None:
    """A doc that links a log of docs/measurements/ and then, in the same section, quotes output
    in a code block quotes lines of that log, and the total it states is the log's."""
    quoted = 0
    for doc in DOCS:
        text = doc.read_text()
        for link in re.finditer(r"\]\(([^)]*measurements/[\w.-]+\.log)\)", text):
            log = (doc.parent / link[1]).resolve().read_text()
            after = text[link.end():]
            block = FENCE.search(after)
            if block is None or re.search(r"\]\(|\n#", after[:block.start()]):
                continue
            lines = [line for line in block["body"].splitlines() if line.strip()]
            assert set(lines) <= set(log.splitlines()), (_relative(doc), link[1])
            total = re.search(r"^total: (\d+) s$", log, re.M)
            said = re.search(r"(\d+) s in all", " ".join(after[:block.start()].split()))
            assert said is None or (total and said[1] == total[1]), _relative(doc)
            quoted += 1
    assert quoted, "no doc quotes a measurement log"
