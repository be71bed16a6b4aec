"""What several test modules share, as plain functions and constants: no fixtures (those
are in tests/conftest.py) and no tests. One module per subject: `paths` and `tools` (this
checkout and the programs around it), `records` (importing and reading records back),
`detectors` (tiny models and comparing detections), `fuzz` (hypothesis strategies)."""
