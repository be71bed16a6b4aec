"""The dataset path: formats in, TFRecords (or tf_csv) out, with a report of every skip.

This tier never imports TensorFlow (an import-linter contract checks it): converting a dataset
must work, and start fast, in every image and on machines without TensorFlow.
"""
