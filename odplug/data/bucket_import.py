"""``data.import`` with its dataset, its output or both in a bucket (`odplug.storage`).

The import itself is `odplug.data.convert.import_here`, between local folders: a bucket
dataset is mirrored locally (`odplug.storage.mount`: annotations downloaded, images streamed
by the writer's workers), a bucket output is built in a local temporary folder and published
to its URL whole (`odplug.storage.publish`), except the shards of a Beam import, which the
pipeline writes straight into the output's staging prefix. Here too: what is said to the
user names the bucket's URLs, never the mirror's paths, and where a failed import's report
goes (`failed_report_url`).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from odplug.data.convert import (
    FAILED_REPORT_SUFFIX,
    REPORT_NAME,
    ImportOptions,
    ImportResult,
    import_here,
)
from odplug.errors import OdplugError
from odplug.plugins import Registry
from odplug.storage import is_url, mount, publish_folder, url_name
from odplug.storage.publish import check_target, new_stage, stage_url
from odplug.storage.urls import (
    clean,
    filesystem,
    named_by_url,
    remove_quietly,
    storage_errors,
)

FOREIGN_OUTPUT = "an import replaces its output folder whole; give a new or empty folder"


def import_with_urls(
    source: Path | str,
    out: Path | str,
    options: ImportOptions,
    registry: Registry,
    *,
    on_total: Callable[[int], None],
    progress: Callable[[int], None],
    note: Callable[[str], None],
) -> ImportResult:
    """`odplug.data.convert.import_dataset` where `source`, `out` or both are URLs."""
    source_url = str(source) if is_url(str(source)) else None
    out_url = str(out) if is_url(str(out)) else None
    if out_url:  # refused before any work, the dataset's listing included
        if source_url:
            _refuse_overlap(source_url, out_url)
        check_target(out_url, FOREIGN_OUTPUT)
    with contextlib.ExitStack() as stack:
        mounted = stack.enter_context(mount(source_url, note=note)) if source_url else None
        local_source = mounted.source if mounted else Path(source)
        show = mounted.show if mounted else (lambda text: text)
        local_out = (Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="odplug-import-"))) / url_name(out_url) if out_url else Path(out))
        # Beam into a bucket: the shards go straight to the output's staging prefix, where
        # workers on other machines reach it, and are published from there with the rest
        stage = new_stage() if out_url and options.engine == "beam" else None
        remote = stage_url(out_url, stage) if out_url and stage else None
        try:
            result = import_here(local_source, local_out, options, registry,
                                 on_total=on_total, progress=progress, beam_remote=remote)
        except BaseException as error:
            if remote:  # a failed Beam import's shards (a killed one's go with the next publish)
                remove_quietly(remote)
            if not isinstance(error, OdplugError):
                raise
            text = show(str(error))
            if out_url:
                text = _failed_report_to(out_url, local_out, text, show)
            raise OdplugError(text) from None
        result.report.relocate(show)
        if mounted:  # the report.json in the output names the bucket's files too
            result.report.write_json(local_out / REPORT_NAME)
        if out_url:
            publish_folder(local_out, out_url, by="data.import", note=note,
                           foreign=FOREIGN_OUTPUT, stage=stage)
            with storage_errors(out_url, "deleting an earlier failed import's report"):
                _forget_failed_report(out_url)
        return replace(result, out=out)  # type: ignore[arg-type]


def _refuse_overlap(source: str, out: str) -> None:
    """A bucket output inside the bucket dataset, or holding it, is refused as locally."""
    a, b = clean(source) + "/", clean(out) + "/"
    if a.startswith(b) or b.startswith(a):
        where = "is inside the dataset" if b.startswith(a) else "holds the dataset"
        raise OdplugError(f"{out}: {where} {source}; give an output folder of its own, outside "
                          "the dataset")


def failed_report_url(out: str) -> str:
    """Where a failed import's report goes for a bucket output: beside it as
    ``<out>.failed-report.json``, or inside a bucket's root, hidden (``.odplug-...``) so that
    it never counts as an object someone else put there."""
    scheme, _, rest = clean(out).partition("://")
    if "/" not in rest:
        return f"{scheme}://{rest}/.odplug{FAILED_REPORT_SUFFIX}"
    return clean(out) + FAILED_REPORT_SUFFIX


def _failed_report_to(out: str, local_out: Path, text: str, show: Callable[[str], str]
                      ) -> str:
    """A failed import's report, written beside the local temporary output, goes beside the
    bucket output (`failed_report_url`); the error names it there. A report that cannot be
    uploaded is said after the import's own error, never instead of it."""
    failed = local_out.with_name(local_out.name + FAILED_REPORT_SUFFIX)
    text = named_by_url(text, local_out, out)
    if not failed.is_file():
        return text
    url = failed_report_url(out)
    fs, key = filesystem(url)
    try:
        with storage_errors(url, "uploading the report"):
            fs.pipe_file(key, show(failed.read_text()).encode())
    except OdplugError as error:  # kept on this machine instead, outside the temporary folder
        kept = Path(tempfile.mkstemp(prefix="odplug-", suffix=FAILED_REPORT_SUFFIX)[1])
        kept.write_text(show(failed.read_text()))
        return f"{text.replace(str(failed), str(kept))} ({error})"
    return text.replace(str(failed), url)


def _forget_failed_report(out: str) -> None:
    """An earlier failed import's report beside a bucket output, deleted once an import into
    it succeeds, as the local engine deletes ``<out>.failed-report.json``."""
    fs, key = filesystem(failed_report_url(out))
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(key)
