# What type checkers see of the odplug package: __init__.py imports the API on first use.
from types import ModuleType

from odplug.api import demo_dataset as demo_dataset
from odplug.api import evaluate as evaluate
from odplug.api import export as export
from odplug.api import import_dataset as import_dataset
from odplug.api import predict as predict
from odplug.api import train as train
from odplug.hookspecs import hookimpl as hookimpl

__version__: str
API: tuple[str, ...]
__all__: list[str]

class _Odplug(ModuleType): ...
