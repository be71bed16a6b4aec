"""Pictures of datasets, runs and models: what people judge a detector by, drawn from plain data.

The bottom tier with `odplug.data`'s neighbours above it: numpy arrays, PIL images and
matplotlib figures in, PNG/JPEG files out; no TensorFlow and no other odplug tier, so the
dataset path, the trainer plugins and the report all draw with the same code.

- `figure`: a matplotlib figure saved whole (no pyplot: no global state, no GUI backend).
- `boxes`: boxes drawn on images: detections with their labels (``model.predict``), and
  detections judged against the ground truth in three styles (true positive, false positive,
  missed); tiles of several images.
- `matching`: detections matched to the ground truth at a stated score threshold and IoU,
  once for the pictures, the confusion matrix and the report's "most errors first" order.
"""
