"""Step 1 of the original workflow, as `supervisely2tf_csv.py` did it: Supervisely to tf_csv.

The baseline odplug is measured against, so it does the same work in the same way: walk the
project, open every image with PIL to drop files PIL cannot read, write label_map.pbtxt, split
the annotations by their train/test tags (reading each annotation file once per tag), read each
annotation again to build one pandas row per object, write train.csv/test.csv and copy every
image into images/train or images/test. Two deliberate differences, neither changing the cost:
a box is the min/max over all exterior points (the original used the first two points, which
is right for rectangles only), and there is no val split (the original's never worked).

Usage: python baseline_supervisely_to_csv.py --src PROJECT --dst TF_CSV_DIR
"""

import argparse
import json
import os
from shutil import copyfile

import pandas
from PIL import Image

SPLITS = ("train", "test")


def load_paths(src):
    """The project's meta.json and every annotation and image path under it."""
    meta, anns, imgs = None, [], []
    for folder, _subfolders, files in os.walk(src):
        for name in files:
            path = os.path.join(folder, name)
            if name == "meta.json":
                with open(path) as f:
                    meta = json.load(f)
            elif "/ann/" in path:
                anns.append(path)
            elif "/img/" in path:
                imgs.append(path)
    return meta, anns, imgs


def drop_unreadable(anns, imgs):
    """Drop images PIL cannot open (webp broke training) and their annotations."""
    bad = []
    for img in imgs:
        try:
            Image.open(img)
        except Exception:
            bad.append(img)
    bad_anns = {img.replace("/img/", "/ann/") + ".json" for img in bad}
    print(f"removing {len(bad)} unreadable images")
    return [a for a in anns if a not in bad_anns], [i for i in imgs if i not in bad]


def write_label_map(meta, dst):
    with open(os.path.join(dst, "label_map.pbtxt"), "w") as f:
        for i, cls in enumerate(meta["classes"]):
            f.write(f"item  {{\n  id: {i + 1}\n  name: '{cls['title']}'\n}}\n\n")


def has_tag(ann_path, tag):
    with open(ann_path) as f:
        return tag in [t["name"] for t in json.load(f)["tags"]]


def split_by_tags(anns):
    splits = {tag: [a for a in anns if has_tag(a, tag)] for tag in SPLITS}
    for tag, members in splits.items():
        assert members, f"No tag '{tag}' was found in images. Make sure to correct tags."
    return splits


def image_paths(anns):
    """Image name -> (annotation path, image path), as the original keyed them."""
    return {
        os.path.basename(a)[: -len(".json")]: (a, a.replace("/ann/", "/img/")[: -len(".json")])
        for a in anns
    }


def rows_of(name, ann_path):
    with open(ann_path) as f:
        ann = json.load(f)
    width, height = ann["size"]["width"], ann["size"]["height"]
    for obj in ann["objects"]:
        xs = [p[0] for p in obj["points"]["exterior"]]
        ys = [p[1] for p in obj["points"]["exterior"]]
        yield {
            "filename": name,
            "width": width,
            "height": height,
            "class": obj["classTitle"],
            "xmin": int(min(xs)),
            "ymin": int(min(ys)),
            "xmax": int(max(xs)),
            "ymax": int(max(ys)),
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="the Supervisely project")
    parser.add_argument("--dst", required=True, help="where the tf_csv dataset goes")
    args = parser.parse_args()
    os.makedirs(args.dst, exist_ok=True)

    meta, anns, imgs = load_paths(args.src)
    anns, imgs = drop_unreadable(anns, imgs)
    write_label_map(meta, args.dst)
    for split, split_anns in split_by_tags(anns).items():
        paths = image_paths(split_anns)
        rows = [row for name, (ann, _img) in paths.items() for row in rows_of(name, ann)]
        pandas.DataFrame(rows).set_index("filename").to_csv(os.path.join(args.dst, f"{split}.csv"))
        images_dir = os.path.join(args.dst, "images", split)
        os.makedirs(images_dir, exist_ok=True)
        print(f"copying {len(paths)} {split} images..")
        for _ann, img in paths.values():
            copyfile(img, os.path.join(images_dir, os.path.basename(img)))


if __name__ == "__main__":
    main()
