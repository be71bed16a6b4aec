"""Built-in importer and writer for YOLO text labels: the Ultralytics and the darknet layouts.

**Ultralytics**: a ``data.yaml`` (or the one top-level ``*.yaml`` with ``names``) holding
``names`` (a list, or a mapping index -> name; ``nc`` alone gives ``class_0`` ...) and
``train``/``val``/``test`` (``validation`` reads as ``val``). Each is a folder of images (read
recursively), a text file listing image paths, or a list of those, relative to the yaml's
``path:`` when it names an existing folder, else to the yaml's own folder (a yaml moved with its
dataset, or one written on another machine). An entry that does not exist and starts with
``../`` is tried without it, as Ultralytics does, so Roboflow's ``../train/images`` finds
``train/images`` beside the yaml. A split entry that resolves outside the folder given as the
source is one reported skip naming the yaml: odplug imports only what lies inside it. A
single image file as an entry is taken as one image (Ultralytics would read it as a list).
An entry that does not exist is a warning naming it (the split is left out), and a ``path:``
that is not a folder one naming both it and the yaml's folder used instead. An image of the
source folder that no entry names is a reported skip (Ultralytics would not read it either).
The label of ``.../images/x.jpg`` is ``.../labels/x.txt`` (Ultralytics' rule: the last
``images`` folder becomes ``labels`` and the extension ``.txt``; applied below the source
folder only, so a dataset kept inside a folder called ``images`` never reads labels outside).
List lines are tried as ``./x`` beside the list, as written, against the dataset folder, and
as the longest tail of the path found inside it (paths from another machine or relative to
darknet's working folder).

**darknet** (also CVAT's "YOLO 1.1", LabelImg and Label Studio exports): class names one per
line in ``obj.names``, ``classes.txt`` or the one ``*.names`` file (or the file ``obj.data``'s
``names =`` gives), and one ``.txt`` per image, found by Ultralytics' rule or else beside the
image. Image lists ``train.txt``, ``valid.txt`` (or ``val.txt``), ``test.txt`` at the top, or
those ``obj.data`` names, give the splits; every image in the folder that no list names is
imported with no split (the core then asks for ``--split ratio`` if others have one).

**Detection**: a folder is YOLO when it holds ``data.yaml`` (one that does not parse is
claimed, so its error is shown), a top-level yaml with ``names`` or ``nc`` and a split key, or
``obj.data``; or a class-names file as above and an image with a label file by the rules
above, searched among the first 1000 images only. A yaml or ``obj.data`` file given as the
source is read as is.

**Splits**: from the yaml's ``train``/``val``/``test`` and the darknet lists; an image listed
in two splits is imported into the first (train, val, test order) and the second is the
core's reported duplicate (its label file is read once); images without a list have no split.

**Labels**: ``class cx cy w h``, normalised to the image, or a segmentation line ``class x1 y1
... xn yn`` (n >= 3), imported as its polygon's extents, which is the box Ultralytics derives
from it. Each line is read by its own count (Ultralytics reads every line of a file as a
polygon once one is). With the yaml's ``kpt_shape: [k, d]`` (a pose dataset) a line is ``class
cx cy w h`` and k keypoints of d values: the box is the first 4 values and the keypoints are
left out, counted in one warning. Without it, Ultralytics reads such a line as a polygon and so
does odplug, but when every long line has one length and most read as well as a box with its
keypoints inside, a warning says so and which ``kpt_shape`` would read them as pose lines.
Class index i becomes label id i + 1 (id 0 is the TF OD API's
background), and the label map lists every name in index order, unused classes included.
Pixels need the image's size: it is read from the image header, one image at a time, with the
EXIF orientation applied, as the writer rotates such images (`upright_size`: JPEG and PNG are
not decoded; the rarer formats are, as the writer decodes them); an image whose header
cannot be read is a reported skip. Values outside [-0.01, 1.01] (Ultralytics' tolerance) are a
skipped box; within it the core clips the box to the image and reports the change. Every
other problem is reported with the label file and line: wrong field counts, non-numeric or
non-finite values, class indices out of range, zero-size boxes, repeated lines (Ultralytics
drops them too), label files that no image uses. An image without a label file is a
background image, as in Ultralytics, and noted so a misnamed labels folder cannot pass unseen;
an empty one is a background image without a note. A UTF-8 BOM and CRLF line ends are
accepted.

**Writer** (``--to yolo``): ``data.yaml``, ``images/<split>/<file>`` and ``labels/<split>/
<stem>.txt`` (empty for a background image), the Ultralytics layout. The yaml has no ``path:``:
Ultralytics then resolves ``train``/``val``/``test`` against the yaml's own folder, wherever the
dataset is moved (``path: .`` would mean the current directory of whoever trains). ``names`` is
the label map in column order, so ids with gaps (COCO's 1, 3, 7) become indices 0, 1, 2, and
ids 1, 2, 3 when read back. Ultralytics requires a ``val`` split: a warning says when there is
none. Coordinates are written as Python's shortest round-trip float text, so a box survives a
round trip to within float32 rounding. A file keeps its name less the folders that every image
of its split shares, other folders joined with ``_`` (an ``images`` folder below
``images/<split>`` would move its labels by Ultralytics' rule); a name whose label file would
collide with another's gets a ``_2`` suffix, and a re-encoded image the suffix of its format.
"""

from __future__ import annotations

from collections.abc import Callable

from odplug import hookimpl
from odplug.components import DatasetWriter, Importer
from odplug_builtins.yolo.reader import YoloImporter
from odplug_builtins.yolo.writer import YoloWriter

__all__ = ["YoloImporter", "YoloWriter"]


@hookimpl(trylast=True)
def odplug_register_importers(register: Callable[[Importer], None]) -> None:
    register(YoloImporter())


@hookimpl(trylast=True)
def odplug_register_writers(register: Callable[[DatasetWriter], None]) -> None:
    register(YoloWriter())
