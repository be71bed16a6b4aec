"""``pipeline.json``: what the pipeline keeps of each finished stage, and what it does with a
state it cannot read (an older odplug's, a damaged file): it runs the stage again."""

from __future__ import annotations

import json
from pathlib import Path


def test_stored_outputs_this_odplug_cannot_read_run_the_stage_again(tmp_path: Path) -> None:
    """An older odplug's state (models without their variant, a file that is not an object)
    is stale, never a crash: the stage runs again and stores what it reads."""
    from odplug.components import ExportedModel
    from odplug.workflows.pipeline import STATE, _State

    model = ExportedModel("tflite", "int8", tmp_path / "m.tflite", tmp_path / "m.json", 7)
    events: list[tuple[str, str]] = []

    def export() -> list[ExportedModel]:
        state = _State(tmp_path, False, lambda stage, event: events.append((stage, event)))
        return state.run("export", {"to": ["tflite"]}, lambda: True,
                         lambda: {"models": [model.to_json()]},
                         lambda outputs: [ExportedModel.from_json(m) for m in outputs["models"]])

    assert export() == [model] and events == [("export", "running"), ("export", "done")]
    events.clear()
    assert export() == [model] and events == [("export", "reused")]
    state = json.loads((tmp_path / STATE).read_text())
    state["export"]["outputs"]["models"] = [{"exporter": "tflite", "name": "tflite-int8",
                                             "path": "m", "manifest": "j", "size_bytes": 7}]
    for older in (state, ["not", "an", "object"]):
        (tmp_path / STATE).write_text(json.dumps(older))
        events.clear()
        assert export() == [model] and events == [("export", "running"), ("export", "done")]
