"""Which arguments are URLs, the fsspec file system behind one, and its errors in one line."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odplug.errors import OdplugError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
            "abfs": "adlfs", "abfss": "adlfs"}
"""The fsspec backend package each common scheme needs, for the error of a missing one."""

BUCKET_SCHEMES = frozenset(BACKENDS)
"""Object stores, whose URLs' first path part is a bucket (a container) that must exist."""


def is_url(value: str | os.PathLike[str] | None) -> bool:
    """Whether `value` is a URL (``scheme://...``) rather than a local path; ``file://`` URLs
    count as local paths and are returned as such by `local_path`."""
    if value is None or isinstance(value, os.PathLike):
        return False
    match = _SCHEME.match(str(value))
    return match is not None and match.group(1).lower() != "file"


def is_file_url(value: object) -> bool:
    """Whether `value` is text written as a ``file://`` URL."""
    return isinstance(value, str) and value[:7].lower() == "file://"


def local_path(value: str) -> str:
    """``file:///x`` and ``file://localhost/x`` as ``/x`` (fsspec reads ``file://x`` as the
    relative ``x``, and so does this); anything else unchanged.

    Needed wherever a user's path enters (`odplug.arguments.file_urls_as_paths`): a
    ``file://`` URL made a `Path` becomes the relative folder ``file:/x`` (pathlib collapses
    the slashes), so ``--out file:///data/records`` wrote into ``./file:/data/records``.
    """
    if not is_file_url(value):
        return value
    rest = value[len("file://"):]
    return rest[len("localhost"):] if rest.lower().startswith("localhost/") else rest


def clean(url: str) -> str:
    """`url` without a trailing slash and with single slashes (``s3://b/ds/``,
    ``s3://b//ds`` and ``s3://b/ds`` are one folder: s3fs lists ``b//ds`` as ``b/ds`` but
    deletes the key as written, so a doubled slash would leave objects behind)."""
    scheme, _, rest = url.partition("://")
    rest = re.sub(r"/{2,}", "/", rest).rstrip("/")
    return f"{scheme}://{rest}" if rest else url


def named_by_url(text: str, local: Path, url: str) -> str:
    """`text` (a message, a report's path) with `url`'s local copy `local` (a mirror, a
    cache or a run's working copy) named by the URL: the copy is where odplug works, not
    what the user asked for."""
    return text.replace(str(local), clean(url))


def url_name(url: str) -> str:
    """The last part of `url`'s path (``ds`` for ``s3://bucket/data/ds/``), the bucket for a
    bucket's root."""
    return clean(url).rsplit("/", 1)[-1]


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec file system for `url` and the path within it that fsspec's calls take.

    A scheme whose backend is not installed is one line naming the package to install;
    credentials are the backend's own business (environment, config files)."""
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec comes with odplug's cloud extra
        raise OdplugError(f"{url}: URLs need fsspec: pip install 'odplug[cloud]'") from None
    scheme = url.split("://", 1)[0].lower()
    # backends log each retry and failure themselves; odplug says what failed in one line
    for backend in ("gcsfs", "s3fs", "aiobotocore", "botocore"):
        logging.getLogger(backend).setLevel(logging.CRITICAL)
    try:
        fs, path = fsspec.core.url_to_fs(clean(url))
    except ImportError as error:
        if scheme not in BACKENDS:  # fsspec's own words name what to install
            raise OdplugError(f"{url}: {scheme}:// URLs need a package that is not installed "
                              f"({error})") from None
        package = BACKENDS[scheme]
        raise OdplugError(f"{url}: {scheme}:// URLs need {package}: pip install {package} "
                          "(or pip install 'odplug[cloud]' for s3:// and gs://)") from None
    except ValueError as error:
        raise OdplugError(f"{url}: {scheme}:// is not a storage odplug knows ({error})") from None
    except Exception as error:  # a backend that connects when made (ftp://, sftp://)
        doing = "reach" if isinstance(error, OSError) else "open"
        raise OdplugError(f"{url}: cannot {doing} the storage: {reason(error)}") from None
    return fs, path.rstrip("/")


def reason(error: BaseException) -> str:
    """One readable line for what a storage backend raised (botocore, aiohttp, google-auth and
    OS errors all end up here), without its traceback."""
    name = type(error).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return ("no credentials found: set them as the backend reads them (AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY, or ~/.aws for s3://; "
                "GOOGLE_APPLICATION_CREDENTIALS or gcloud for gs://)")
    if isinstance(error, PermissionError):
        return "access denied (check the credentials' rights on this bucket)"
    if isinstance(error, FileNotFoundError):
        return "no such file, folder or bucket"
    text = str(error)
    unreachable = (re.search(r"Cannot connect to host (\S+)", text)
                   or re.search(r'Could not connect to the endpoint URL: "?[a-z]+://([^/"\s]+)',
                                text))
    if unreachable:
        return (f"cannot reach the storage service at {unreachable.group(1)}: no network, a "
                "proxy in the way, or a wrong endpoint (AWS_ENDPOINT_URL)")
    if "Anonymous caller" in text:  # gcsfs without credentials falls back to anonymous
        return ("no credentials found: set GOOGLE_APPLICATION_CREDENTIALS or log in with "
                "gcloud auth application-default login")
    text = " ".join(str(error).split()) or name
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def storage_errors(url: str, doing: str) -> Iterator[None]:
    """Turn whatever the backend raises while `doing` something with `url` into one
    `OdplugError` line; odplug's own errors and Ctrl-C pass through."""
    try:
        yield
    except (OdplugError, KeyboardInterrupt):
        raise
    except Exception as error:  # backends raise their own types (botocore's, aiohttp's)
        raise OdplugError(f"{url}: {doing} failed: {reason(error)}") from None


def listed_entry(info: dict[str, Any]) -> dict[str, Any]:
    """A listed object as a manifest entry when no MD5 of ours is known: its size and its
    version as the store gives it (S3's ETag, GCS's md5Hash)."""
    return {"size": int(info.get("size") or 0),
            "etag": str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")}


def remove_quietly(url: str) -> None:
    """Delete everything under `url`, best effort: for temporary prefixes (a Beam job's, a
    failed import's staging) that the next publish to that output deletes anyway."""
    fs, key = filesystem(url)
    with contextlib.suppress(Exception):  # backends raise their own types
        fs.rm(key, recursive=True)


def entries(fs: AbstractFileSystem, root: str) -> dict[str, dict[str, Any]]:
    """Every object below `root`, by its path relative to `root` (``/``-separated), with
    fsspec's details (size, ETag, ...); empty when nothing is there. Hidden ``.odplug-*``
    names (staging, intents) are included: callers decide."""
    fs.invalidate_cache(root)  # another process may have changed it since this one looked
    try:
        found = fs.find(root, detail=True, withdirs=False)
    except FileNotFoundError:
        return {}
    prefix = root.rstrip("/") + "/"
    return {name[len(prefix):]: info for name, info in found.items()
            if name.startswith(prefix) and info.get("type", "file") == "file"}
