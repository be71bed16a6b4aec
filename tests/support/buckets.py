"""A real S3 API on 127.0.0.1 for the bucket tests: moto's server, one per test process.

The server is started on a free port the first time a test asks for a bucket, and the usual
AWS environment points every client at it (``AWS_ENDPOINT_URL``, fake credentials), so the
code under test finds it as it finds a real bucket: through s3fs and botocore's own lookup,
with no odplug option. Child processes (the import's workers, ``odplug`` commands run by a
test) inherit the environment. Each test gets a bucket of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_server() -> tuple[Any, str]:
    """moto's threaded server on a free port of 127.0.0.1, and its endpoint URL."""
    pytest.importorskip("moto.server", reason="moto[server] is a test requirement "
                                              "(dockerfiles/requirements/test.txt)")
    pytest.importorskip("s3fs", reason="s3fs comes with odplug[cloud] (setup.sh installs it)")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The endpoint of the session's moto server, set in this process's environment."""
    server, endpoint = start_server()
    saved = {key: os.environ.get(key) for key in [*ENVIRONMENT, "AWS_ENDPOINT_URL"]}
    os.environ.update(ENVIRONMENT, AWS_ENDPOINT_URL=endpoint)
    try:
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """``s3://<a new bucket>``: empty, this test's own."""
    import s3fs

    name = f"odplug-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return f"s3://{name}"


def upload(folder: Path, url: str) -> str:
    """Copy `folder` to `url` object by object, as ``aws s3 sync`` would; returns `url`."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    fs.put([str(p) for p in files], [f"{root}/{p.relative_to(folder).as_posix()}" for p in files])
    return url


def listing(url: str) -> dict[str, bytes]:
    """Every object under `url` by relative name, with its bytes."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return {name[len(root) + 1:]: fs.cat_file(name) for name in fs.find(root)}
