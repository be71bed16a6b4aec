"""odplug: labelled images to a trained detector and every deployment format, through plugins.

A plugin is three lines::

    from odplug import hookimpl

    @hookimpl
    def odplug_register_importers(register): ...
"""

from odplug.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
