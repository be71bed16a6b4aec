"""``python -m odplug.data.beam JOB_FOLDER [BEAM FLAGS...]``: the pipeline, in the Beam
environment. The pipeline lives in its own module (not this ``__main__``), so Beam pickles
its functions by reference and a worker imports them from odplug."""

import sys

from odplug.data.beam import NO_BEAM

try:
    from odplug.data.beam.pipeline import main
except ModuleNotFoundError as error:
    if error.name is None or not error.name.startswith("apache_beam"):
        raise
    print(f"odplug: error: {sys.executable} cannot import apache_beam", file=sys.stderr)
    sys.exit(NO_BEAM)

main(sys.argv[1], sys.argv[2:])
