"""The HTML report of a pipeline or an export: one self-contained page, viewable offline.

Above the exports tier (it shows their verification), below the workflows that write it; no
TensorFlow: it reads what the stages left (the records' dataset pictures, the run's
``run.json`` and the files it names, the export's verification) and draws with
`odplug.pictures`.
"""
