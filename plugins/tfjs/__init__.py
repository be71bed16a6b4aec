"""Built-in exporter ``tfjs``: a TensorFlow.js graph model with its manifest and a demo web page.

TF.js converts neither ``combined_non_max_suppression`` (the serving signature's per-class NMS)
nor gives right answers with ``non_max_suppression_padded``, so the export first builds a
TF.js-ready SavedModel in this environment (`odplug_builtins.tfjs.graph`): the run's ``raw``
signature, box decoding and the NMS ``detector.json`` records, made of
``non_max_suppression_with_scores`` (`odplug.model.postprocess.select`). The
``tensorflowjs`` converter then runs on it in its own environment (it pins its own TensorFlow),
one variant per weight quantization (`odplug_builtins.tfjs.convert`). Verification runs each
model in Node.js with ``@tensorflow/tfjs`` on its WebAssembly backend, falling back to the
pure-JavaScript one (`odplug_builtins.tfjs.node`).

Setup, as ``.ci/run`` does it::

    python3 -m venv .venv-tfjs && .venv-tfjs/bin/pip install -r dockerfiles/requirements/tfjs.txt
    npm ci --prefix plugins/tfjs
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from odplug import hookimpl
from odplug.components import NO_INPUTS, ExportedModel, Exporter, require_module

if TYPE_CHECKING:
    from odplug.trained import TrainedDetector

VARIANTS = ("float32", "float16", "uint8")
FORMAT = "tfjs_graph_model"
"""The ``format`` of the manifest.json this exporter writes beside each model.json."""


class TfjsExporter(Exporter):
    name = "tfjs"
    summary = ("TensorFlow.js graph model (weights float32, float16 or uint8), manifest, "
               "labels and a demo web page; verified in Node.js")
    variants = VARIANTS
    default_variants = VARIANTS

    def check(self) -> None:
        from odplug_builtins.tfjs.convert import converter_python
        from odplug_builtins.tfjs.node import page_files

        require_module("tensorflow", what="the tfjs exporter",
                       install="pip install -r dockerfiles/requirements/tf.txt")
        converter_python()
        page_files()

    def export(self, trained: TrainedDetector, out: Path, *, variants: Sequence[str],
               records: Path | None = None,
               inputs: Mapping[str, Mapping[str, ExportedModel]] = NO_INPUTS
               ) -> list[ExportedModel]:
        from odplug_builtins.tfjs.convert import export

        return export(trained, out, variants)

    def detector(self, exported: ExportedModel) -> Callable[..., object]:
        from odplug_builtins.tfjs.node import NodeDetector

        return NodeDetector(exported.path)

    def model_at(self, path: Path) -> ExportedModel | None:
        """A folder with model.json and the ``manifest.json`` this exporter writes."""
        manifest = path / "manifest.json"
        if not (path.is_dir() and (path / "model.json").is_file() and manifest.is_file()):
            return None
        try:
            described = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(described, dict) or described.get("format") != FORMAT:
            return None
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        return ExportedModel(self.name, str(described.get("variant", "")), path, manifest, size)


@hookimpl(trylast=True)
def odplug_register_exporters(register):  # type: ignore[no-untyped-def]
    register(TfjsExporter())
