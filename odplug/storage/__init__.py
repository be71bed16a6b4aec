"""Datasets, runs and exports in object storage (``s3://``, ``gs://``, any fsspec URL).

Every option that names a folder or file (``--source``, ``--out``, ``--records``, ``--run``,
``--model``) takes a URL as well as a local path. The core and every plugin still work on
local paths, so nothing a plugin author writes changes; this package stands between a URL and
the local path the work sees:

- `mount` (sources of ``data.import``): the bucket's listing is mirrored in a local folder,
  annotation files downloaded, images left as empty stand-ins of the right size, and the
  image bytes streamed from the bucket by the workers that read them (`open_source`). No
  local copy of the images is made.
- `fetched` (inputs: records, runs, models): the folder is downloaded once into odplug's cache
  (``$ODPLUG_CACHE_DIR``, by default ``~/.cache/odplug``) and checked against its manifest;
  later runs download only what changed.
- `publish_folder` (outputs): a finished local folder replaces the folder at the URL whole
  (`odplug.storage.publish` states the rule and its recovery).

Credentials come from each backend's usual environment and files (``AWS_*`` variables and
``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS`` and gcloud's), never from odplug options.
"""

from odplug.storage.fetch import cache_dir, fetched, local_copy
from odplug.storage.mount import Mount, mount, open_source, read_source
from odplug.storage.publish import MANIFEST, publish_folder, read_manifest, recover
from odplug.storage.urls import is_url, url_name

__all__ = [
    "MANIFEST", "Mount", "cache_dir", "fetched", "is_url", "local_copy", "mount",
    "open_source", "publish_folder", "read_manifest", "read_source", "recover", "url_name",
]
