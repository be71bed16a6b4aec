"""How odplug reads a command line: invoke's parser, with a usage error that names what was
meant, and each task's help with the type of every value.

Shared by the ``odplug`` program and by ``inv`` running this checkout's tasks.py, so both
answer the same way.
"""

from __future__ import annotations

import inspect
import re
import textwrap

from invoke import Argument, Program
from invoke.exceptions import Exit, ParseError
from invoke.parser import ParserContext

from odplug.cli.console import USAGE
from odplug.suggest import did_you_mean

METAVARS = {str: "STRING", int: "INT", float: "FLOAT", list: "STRING"}
"""The value shown after each valued flag in a task's help. invoke's own help shows STRING and
INT only, so ``--threshold`` (a float) and ``--set`` (repeatable) read as switches."""

# invoke's parse errors carry their subject in the text only (and the task's context).
_UNKNOWN = re.compile(r"No idea what '(?P<word>.*)' is!")
_NO_VALUE = re.compile(r"Flag <\w+: (?P<name>[\w-]+)[ >].*needed value")


class OdplugParsing(Program):  # type: ignore[misc]
    """invoke's Program, answering a wrong command line in odplug's words, with exit status 2.

    ``odplug data.imprt`` is ``odplug: error: no task 'data.imprt'. Did you mean
    'data.import'?``; a mistyped flag gets the closest of its task's flags; a flag without its
    value is named. ``TASK -h`` (or ``--help``) shows the task's help with each value's type.
    """

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as error:
            raise Exit(self.usage_line(error), code=USAGE) from None

    def parse_cleanup(self) -> None:
        root = self.args.list.value
        if isinstance(root, str):
            try:
                self.collection.subcollection_from_path(root)
            except KeyError:
                hint = did_you_mean(root, self.collection.collections)
                raise Exit(f"odplug: error: --list: no collection {root!r}.{hint}",
                           code=USAGE) from None
        try:
            super().parse_cleanup()
        except ParseError as error:
            raise Exit(self.usage_line(error), code=USAGE) from None

    def usage_line(self, error: ParseError) -> str:
        """One line for one of invoke's parse errors, with the name most likely meant."""
        context = error.context
        task = context.name if context is not None and context.name else ""
        unknown = _UNKNOWN.fullmatch(str(error))
        if unknown and unknown["word"].startswith("-"):
            word = unknown["word"]
            hint = _flag_hint(word, self._long_flags(context))
            if task:
                return (f"odplug: error: {task} has no flag {word!r}."
                        f"{hint or f' {task} -h lists its flags.'}")
            return f"odplug: error: no flag {word!r}.{hint or ' -h lists them.'}"
        if unknown:
            word = unknown["word"]
            names = [n for p, aliases in self.collection.task_names.items() for n in (p, *aliases)]
            hint = did_you_mean(word, names) or " --list shows every task."
            return f"odplug: error: no task {word!r}.{hint}"
        no_value = _NO_VALUE.match(str(error))
        if no_value:
            where = f"{task}: " if task else ""
            return f"odplug: error: {where}{_flag(no_value['name'])} needs a value"
        return f"odplug: error: {error}"

    def _long_flags(self, context: ParserContext | None) -> list[str]:
        contexts = [c for c in (context, self.initial_context) if c is not None]
        return [flag for c in contexts for flag in (*c.flags, *c.inverse_flags)
                if flag.startswith("--")]

    def print_task_help(self, name: str) -> None:
        """invoke's task help, with the type of every flag's value (`METAVARS`)."""
        context = self.parser.contexts[name]
        print(f"Usage: {self.binary} [--core-opts] {name} [--options] [other tasks here ...]\n")
        print("Docstring:")
        docstring = inspect.getdoc(self.collection[name]) or "none"
        print(textwrap.indent(docstring, self.leading_indent) + "\n")
        print("Options:")
        arguments = sorted(context.args.values(), key=lambda argument: argument.name)
        self.print_columns([flag_help(context, argument) for argument in arguments])


def flag_help(context: ParserContext, argument: Argument) -> tuple[str, str]:
    """``(-s STRING, --source=STRING, its help)``: one row of a task's help."""
    value = METAVARS.get(argument.kind) if argument.takes_value else None
    names = []
    for name in sorted(argument.names, key=len):
        flag = _flag(name)
        if value is None and flag in context.inverse_flags.values():
            flag = f"--[no-]{name}"
        elif value is not None:
            flag += f" {value}" if len(name) == 1 else f"={value}"
        names.append(flag)
    return ", ".join(names), argument.help or ""


def _flag(name: str) -> str:
    return f"-{name}" if len(name) == 1 else f"--{name}"


def _flag_hint(word: str, flags: list[str]) -> str:
    """The flag a mistyped `word` most likely meant; for a short flag no task has, the one long
    flag starting with its letter (``-t`` in a task with ``--threshold`` only)."""
    if re.fullmatch(r"-\w", word):
        starting = [flag for flag in flags if flag.startswith(f"--{word[1]}")]
        return f" Did you mean {starting[0]!r}?" if len(starting) == 1 else ""
    return did_you_mean(word, flags)


def parse_like_odplug(program: Program) -> None:
    """Give a running invoke `program` that odplug did not make (``inv``, which loads this
    checkout's tasks.py) `OdplugParsing`'s answers to a wrong command line and its task help.

    tasks.py is loaded after the core flags are parsed and before the tasks are, so this covers
    every parse error but a core flag's own (``inv -f`` without its file). The program's class
    becomes a subclass of its own class and `OdplugParsing`, so its other behaviour stays.
    """
    if not isinstance(program, OdplugParsing):
        program.__class__ = type(f"OdplugParsing{type(program).__name__}",
                                 (OdplugParsing, type(program)), {})
