"""Step 2 of the original workflow, as `generate_tfrecord.py` did it: one tf_csv split to TFRecord.

The classic script every TF Object Detection API tutorial shipped, on TensorFlow 2 names: import
TensorFlow, read the CSV with pandas, group its rows by filename, and for each image read the
file with tf.io.gfile.GFile, open it with PIL for its size, build a tf.train.Example with the
API's keys and write it through the split's single TFRecordWriter. The original mapped class
names to ids with the OD API's label_map_util; the OD API is not installed here, so a few lines
read the label map instead (once per run, a negligible cost). The workflow runs this script once
per split, each a new process.

Usage: python baseline_csv_to_tfrecord.py --csv_input=train.csv --output_path=train.record
           --img_path=images/train --label_map=label_map.pbtxt
"""

import argparse
import io
import os
import re
from collections import namedtuple

import pandas as pd
import tensorflow as tf
from PIL import Image


def read_label_map(path):
    with open(path) as f:
        text = f.read()
    items = re.findall(r"item\s*\{(.*?)\}", text, re.S)
    names = [re.search(r"name:\s*['\"](.*?)['\"]", item).group(1) for item in items]
    ids = [int(re.search(r"id:\s*(\d+)", item).group(1)) for item in items]
    return dict(zip(names, ids, strict=True))


def int64_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def int64_list_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=value))


def bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def bytes_list_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=value))


def float_list_feature(value):
    return tf.train.Feature(float_list=tf.train.FloatList(value=value))


def split(df, group):
    data = namedtuple("data", ["filename", "object"])
    grouped = df.groupby(group)
    return [data(filename, grouped.get_group(filename)) for filename in grouped.groups]


def create_tf_example(group, path, label_map):
    with tf.io.gfile.GFile(os.path.join(path, group.filename), "rb") as fid:
        encoded_jpg = fid.read()
    image = Image.open(io.BytesIO(encoded_jpg))
    width, height = image.size

    filename = group.filename.encode("utf8")
    xmins, xmaxs, ymins, ymaxs, classes_text, classes = [], [], [], [], [], []
    for _index, row in group.object.iterrows():
        xmins.append(row["xmin"] / width)
        xmaxs.append(row["xmax"] / width)
        ymins.append(row["ymin"] / height)
        ymaxs.append(row["ymax"] / height)
        classes_text.append(row["class"].encode("utf8"))
        classes.append(label_map[row["class"]])

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/height": int64_feature(height),
                "image/width": int64_feature(width),
                "image/filename": bytes_feature(filename),
                "image/source_id": bytes_feature(filename),
                "image/encoded": bytes_feature(encoded_jpg),
                "image/format": bytes_feature(b"jpg"),
                "image/object/bbox/xmin": float_list_feature(xmins),
                "image/object/bbox/xmax": float_list_feature(xmaxs),
                "image/object/bbox/ymin": float_list_feature(ymins),
                "image/object/bbox/ymax": float_list_feature(ymaxs),
                "image/object/class/text": bytes_list_feature(classes_text),
                "image/object/class/label": int64_list_feature(classes),
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv_input", required=True, help="path to the split's CSV")
    parser.add_argument("--output_path", required=True, help="path of the TFRecord to write")
    parser.add_argument("--img_path", required=True, help="folder of the split's images")
    parser.add_argument("--label_map", required=True, help="path to label_map.pbtxt")
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.output_path)), exist_ok=True)

    label_map = read_label_map(args.label_map)
    writer = tf.io.TFRecordWriter(args.output_path)
    examples = pd.read_csv(args.csv_input)
    for group in split(examples, "filename"):
        tf_example = create_tf_example(group, args.img_path, label_map)
        writer.write(tf_example.SerializeToString())
    writer.close()
    print(f"Successfully created the TFRecords: {args.output_path}")


if __name__ == "__main__":
    main()
