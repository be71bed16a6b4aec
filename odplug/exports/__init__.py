"""Export orchestration: which exporters run in what order, and the verification table that
scores every exported model against the SavedModel it came from."""
