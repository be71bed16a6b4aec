"""The unit tier runs without TensorFlow: a test here that imports it fails, so the tier stays
the one that answers in seconds (`pytest tests/unit`). What needs TensorFlow belongs in
tests/core or in its plugin's folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

HEAVY = ("tensorflow", "keras")


@pytest.fixture(autouse=True)
def no_tensorflow() -> Iterator[None]:
    """Fail a test that loads TensorFlow or Keras into a process that had neither (in a mixed
    run a worker may have loaded them already for another tier; then there is nothing to
    tell)."""
    before = [name for name in HEAVY if name in sys.modules]
    yield
    if not before:
        loaded = [name for name in HEAVY if name in sys.modules]
        if loaded:
            pytest.fail(f"a unit test imported {', '.join(loaded)}: move it to tests/core or "
                        "its plugin's folder", pytrace=False)
