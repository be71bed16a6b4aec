"""The benchmark project in a local S3 bucket (moto's server), for `bench.convert --bucket`.

The question is what reading a dataset from a bucket costs an import against reading the same
files from disk (issue 27), without a cloud account, so it is answered against moto's S3 server
on 127.0.0.1, the one the tests use. What that measures is odplug's side: a request per image
through s3fs and botocore, the listing mirrored, the annotations downloaded. A real bucket adds
the network's latency and bandwidth, and takes away moto's serving, which here runs in the
benchmark's own process on the same cores as the import.

moto is a test requirement (``moto[server]`` in dockerfiles/requirements/test.txt) and s3fs comes
with ``odplug[cloud]``; both are in ``.venv`` after ``setup.sh``. Run as a script, this module
is the bucket's ``cat`` (`cat_bucket`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from odplug.errors import OdplugError

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""moto accepts any credentials; these also keep a real ``~/.aws`` profile out of the way."""

BUCKET = "odplug-bench"


def latent_server(latency: float) -> Any:
    """moto's threaded server answering each request `latency` seconds late: a sleep in the
    request's own thread, so requests in flight together wait together, as over a network
    (the CPU stays free, unlike a slower server). It wraps the WSGI application that
    `ThreadedMotoServer._server_entry` builds, the one place moto makes it."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class LatentMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)

            def late(environ: dict, start_response: Callable) -> Any:
                time.sleep(latency)
                return app(environ, start_response)

            self._server = make_server(self._ip_address, self._port, late, True,
                                       request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return LatentMotoServer(ip_address="127.0.0.1", port=0, verbose=False)


@contextlib.contextmanager
def project_in_bucket(project: Path, echo: Callable[[str], None], latency_ms: int = 0
                      ) -> Iterator[tuple[str, dict[str, str]]]:
    """Serve `project` from a moto bucket for the block: yields its URL and the environment
    variables that point an ``odplug`` process at the server (as they would at any S3 API:
    ``AWS_ENDPOINT_URL`` and the credentials, no odplug option). With `latency_ms`, every
    request is answered that late (`latent_server`), as a bucket across a network is."""
    try:
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        raise OdplugError(f"bench.convert --bucket needs moto[server] and s3fs ({error.name} is "
                          "missing): pip install -r dockerfiles/requirements/test.txt "
                          "-r dockerfiles/requirements/cloud.txt, or run setup.sh") from None

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = (latent_server(latency_ms / 1000) if latency_ms
              else ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False))
    server.start()
    try:
        host, port = server.get_host_and_port()
        environment = {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
        fs = s3fs.S3FileSystem(key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                               secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                               token=CREDENTIALS["AWS_SESSION_TOKEN"],
                               endpoint_url=environment["AWS_ENDPOINT_URL"],
                               skip_instance_cache=True)
        fs.mkdir(BUCKET)
        files = [p for p in sorted(project.rglob("*")) if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        echo(f"Uploading {len(files)} files, {size / 1e6:.0f} MB, to s3://{BUCKET} "
             f"(moto on {host}:{port})")
        start = time.perf_counter()
        fs.put([str(p) for p in files],
               [f"{BUCKET}/{project.name}/{p.relative_to(project).as_posix()}" for p in files])
        echo(f"Uploaded in {time.perf_counter() - start:.1f} s"
             + (f"; every request answered {latency_ms} ms late" if latency_ms else ""))
        yield f"s3://{BUCKET}/{project.name}", environment
    finally:
        server.stop()


def cat_bucket(url: str, target: Path) -> int:
    """Every object under `url` fetched through s3fs (its concurrent ``cat``) and written to
    `target` in name order; returns the bytes written. The floor for any reader of this
    server through the same client, as ``cat`` is for the disk."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    names = sorted(fs.find(root))
    data = fs.cat(names)
    with target.open("wb") as sink:
        for name in names:
            sink.write(data[name])
    return sum(len(data[name]) for name in names)


if __name__ == "__main__":  # bench.convert runs it as a process of its own: cat-bucket
    cat_bucket(sys.argv[1], Path(sys.argv[2]))
