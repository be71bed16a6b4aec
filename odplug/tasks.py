"""The odplug task collection, shared by ``inv`` (through the repository's tasks.py) and the
installed ``odplug`` command.

Tasks are thin: parse arguments, call the library, show progress and results. Heavy modules
(TensorFlow above all) are imported inside the tasks that need them, so ``inv -l`` and
``inv plugins`` stay fast and work in every image.
"""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, task
from invoke.exceptions import Exit

from odplug.console import load_registry_warning, progress_bar, user_errors


@task(
    name="import",
    help={
        "source": "dataset to import: a Supervisely project folder, a tf_csv folder or CSV "
        "file, or any format a plugin adds",
        "out": "output folder (default: output/<source name>-<to>)",
        "format": "input format; detected when left out (see `plugins` for the list)",
        "to": "what to write: tfrecord (default) or tf_csv, or a writer a plugin adds",
        "split": "auto (default: the dataset's own train/val/test marks if it has any, else "
        "--ratios), source, or ratio",
        "ratios": "train,val,test fractions for --split ratio (default 0.8,0.1,0.1; two "
        "numbers mean train,test)",
        "seed": "seed of the ratio split (default 0)",
        "classes": "comma-separated class names to keep (after --rename); others are left out",
        "rename": "comma-separated old=new class renames; several old names may merge",
        "label_map": "label_map.pbtxt to use; boxes of classes not in it are skipped",
        "shards": "shards per split (default: auto, about 128 MiB each, one per core at least)",
        "workers": "worker processes (default: one per core)",
        "verify": "header (default: parse headers, check files are complete) or decode "
        "(decode every image in full)",
        "quiet": "print only errors",
    },
)
@user_errors
def import_(
    c, source=None, out=None, format=None, to="tfrecord", split="auto", ratios="0.8,0.1,0.1",
    seed=0, classes=None, rename=None, label_map=None, shards=0, workers=0, verify="header",
    quiet=False,
):
    """Import a labelled dataset into TFRecords (or tf_csv), with a report of every skip."""
    from odplug.convert import ImportOptions, import_dataset, parse_rename
    from odplug.report import render_summary
    from odplug.splits import parse_ratios

    if split not in ("auto", "source", "ratio"):
        raise Exit(f"odplug: error: --split {split!r}: use auto, source or ratio", code=2)
    if verify not in ("header", "decode"):
        raise Exit(f"odplug: error: --verify {verify!r}: use header or decode", code=2)
    if not source:
        raise Exit("odplug: error: give the dataset with --source (see --help)", code=2)
    registry = load_registry_warning()
    source_path = Path(source)
    out_path = Path(out) if out else Path("output") / f"{source_path.resolve().name}-{to}"
    options = ImportOptions(
        format=format, to=to, split=split, ratios=parse_ratios(ratios), seed=seed,
        classes=[n.strip() for n in (classes or "").split(",") if n.strip()],
        rename=parse_rename(rename or ""), label_map=Path(label_map) if label_map else None,
        shards=shards, workers=workers, verify=verify,
    )
    with progress_bar("importing", enabled=not quiet) as bar:
        result = import_dataset(source_path, out_path, options, registry,
                                on_total=bar.start, progress=bar.advance)
    if not quiet:
        print(render_summary(result.report), end="")
        print(f"Wrote {result.writer} to {out_path} ({result.importer} importer); "
              f"label map and report.json beside it.")


@task(
    help={
        "folder": "folder of TFRecord shards (as written by data.import)",
        "json": "print the summary as JSON",
    },
)
@user_errors
def stats(c, folder=None, json=False):
    """Summarise a TFRecord folder: records, boxes and classes per split; checks every CRC."""
    if not folder:
        raise Exit("odplug: error: give the TFRecord folder with --folder (see --help)", code=2)
    import json as json_module

    from odplug.stats import folder_stats, render_stats

    summary = folder_stats(Path(folder))
    print(json_module.dumps(summary, indent=2) if json else render_stats(summary), end="\n")


@task(name="plugins", help={"json": "print the list as JSON"})
def plugins_(c, json=False):
    """List every plugin, its version and what it registers; broken plugins say why."""
    import json as json_module
    from dataclasses import asdict

    from odplug.plugins import load_registry

    registry = load_registry()
    if json:
        print(json_module.dumps([asdict(i) for i in registry.plugins.values()], indent=2))
        return
    for info in registry.plugins.values():
        state = " (disabled)" if info.disabled else (" (BROKEN)" if info.error else "")
        print(f"{info.name} {info.version} [{info.source}]{state}")
        for kind, names in info.registered.items():
            components = registry.components[kind]
            for name in names:
                print(f"    {kind[:-1]:9} {name:12} {components[name].summary}")
        if info.error:
            print(f"    error: {info.error}")


@task(
    name="dataset",
    help={
        "out": "folder to write the Supervisely project to (default demo/supervisely)",
        "images": "number of images (default 300)",
        "size": "image width and height in pixels (default 256)",
        "seed": "random seed; the same seed gives byte-identical files (default 0)",
    },
)
@user_errors
def demo_dataset(c, out="demo/supervisely", images=300, size=256, seed=0):
    """Write a synthetic Supervisely project (shapes on textures, 3 classes) to try odplug on."""
    from odplug.demo import write_demo_project

    with progress_bar("drawing") as bar:
        bar.start(images)
        write_demo_project(Path(out), images=images, size=size, seed=seed, progress=bar.advance)
    print(f"Wrote {images} images to {out}")


def build_namespace() -> Collection:
    data = Collection("data")
    data.add_task(import_, name="import")
    data.add_task(stats)
    demo = Collection("demo")
    demo.add_task(demo_dataset, name="dataset")
    ns = Collection()
    ns.add_collection(data)
    ns.add_collection(demo)
    ns.add_task(plugins_, name="plugins")
    return ns


ns = build_namespace()
