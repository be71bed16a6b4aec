"""The one exception type a user is meant to read.

Everything that goes wrong because of the user's input or environment is raised as
`OdplugError` with a message that names the file and the fix; the task layer prints it as one
line and exits 1, or 2 for a `UsageError`. Any other exception is a bug in odplug.
"""


class OdplugError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class UsageError(OdplugError):
    """The command line itself is wrong, whatever the data: a name nothing registers (format,
    writer, trainer, exporter, variant), a value of the wrong form, a path that does not exist.

    A command exits 2 on it, as on invoke's own parse errors, and 1 on any other
    `OdplugError` (what only doing the work finds), so a script can tell the two apart.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C that left something the user must know of, said in its text: the command line
    prints that line instead of its usual "nothing was left half-written" (exit status 130
    all the same). A KeyboardInterrupt, so everything that lets Ctrl-C through lets it."""
