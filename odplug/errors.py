"""The one exception type a user is meant to read.

Everything that goes wrong because of the user's input or environment is raised as
`OdplugError` with a message that names the file and the fix; the task layer prints it as one
line and exits non-zero. Any other exception is a bug in odplug.
"""


class OdplugError(Exception):
    """A problem with the user's input or environment, explained in the message."""
