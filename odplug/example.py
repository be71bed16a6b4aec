"""One image and its boxes as a `tf.train.Example` in the TF Object Detection API's schema.

The keys are exactly those its ``tf_example_decoder`` reads (see FORMATS.md); boxes are
normalised to [0, 1] by the image size, and every class text written is in the label map, since
the decoder silently turns unknown text into class -1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from odplug.dataset import Box
from odplug.images import ImageData
from odplug.labelmap import LabelMap
from odplug.protos import Example


def encode_example(
    image: ImageData, *, filename: str, source_id: str, boxes: Sequence[Box], label_map: LabelMap
) -> bytes:
    example = Example()
    feature = example.features.feature
    feature["image/encoded"].bytes_list.value.append(image.data)
    feature["image/format"].bytes_list.value.append(image.format.encode())
    feature["image/filename"].bytes_list.value.append(filename.encode())
    feature["image/source_id"].bytes_list.value.append(source_id.encode())
    feature["image/key/sha256"].bytes_list.value.append(
        hashlib.sha256(image.data).hexdigest().encode()
    )
    feature["image/height"].int64_list.value.append(image.height)
    feature["image/width"].int64_list.value.append(image.width)
    w, h = float(image.width), float(image.height)
    feature["image/object/bbox/xmin"].float_list.value.extend([b.xmin / w for b in boxes])
    feature["image/object/bbox/xmax"].float_list.value.extend([b.xmax / w for b in boxes])
    feature["image/object/bbox/ymin"].float_list.value.extend([b.ymin / h for b in boxes])
    feature["image/object/bbox/ymax"].float_list.value.extend([b.ymax / h for b in boxes])
    feature["image/object/class/text"].bytes_list.value.extend([b.label.encode() for b in boxes])
    feature["image/object/class/label"].int64_list.value.extend(
        [label_map.id_of(b.label) for b in boxes]
    )
    feature["image/object/difficult"].int64_list.value.extend([int(b.difficult) for b in boxes])
    feature["image/object/truncated"].int64_list.value.extend([int(b.truncated) for b in boxes])
    return example.SerializeToString()
