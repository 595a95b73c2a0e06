"""TF-Hub / Kaggle model handles to local SavedModel folders, in TF-Hub's own cache layout,
without `tensorflow_hub`.

`tensorflow_hub` cannot be imported without Keras 2 (`tf_keras`) and `pkg_resources` (removed in
setuptools 81), which would force both on every tlkit user; tlkit needs only its handle
resolution. This module does what `tensorflow_hub.resolve` does for the handles tlkit loads, and
shares its cache (a folder made by either is used by the other):

- cache folder: `$TFHUB_CACHE_DIR`, else `<system temp>/tfhub_modules`;
- a handle's folder: `<cache>/<sha1 of the handle>`, with `<that>.descriptor.txt` beside it;
- `http(s)://` handles (tfhub.dev, Kaggle models): GET `<handle>?tf-hub-format=compressed`
  (redirects followed), a tar archive extracted into a temporary folder renamed into place, so
  an interrupted download never leaves a half folder;
- `gs://....tar.gz`: read with `tf.io.gfile`; other `gs://` paths are SavedModel folders, used
  as they are.

Handles without a scheme (`tfhub.dev/...`, `www.kaggle.com/...`) are read as `https://...`.
TensorFlow-free unless a `gs://` handle is resolved.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.parse
import urllib.request

from tlkit._handles import is_hub_handle, is_uri

_FORMAT_QUERY = ("tf-hub-format", "compressed")


def cache_dir() -> str:
    """TF-Hub's cache folder: `$TFHUB_CACHE_DIR`, else `<system temp>/tfhub_modules`."""
    return os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "tfhub_modules")


def normalize(handle: str) -> str:
    """`handle` with `https://` in front of a scheme-less `tfhub.dev/...` / Kaggle handle."""
    return handle if is_uri(handle) else "https://" + handle


def module_dir(handle: str) -> str:
    """The cache folder of `handle` (`<cache>/<sha1 of the handle>`, as `tensorflow_hub`)."""
    return os.path.join(cache_dir(), hashlib.sha1(normalize(handle).encode("utf8")).hexdigest())


def is_cached(handle: str) -> bool:
    """Whether `handle` is already in the cache (a non-empty folder)."""
    folder = module_dir(handle)
    return os.path.isdir(folder) and bool(os.listdir(folder))


def resolve(handle: str, timeout: float = 60.0) -> str:
    """A local (or `gs://`) SavedModel folder for the TF-Hub / Kaggle model `handle`,
    downloaded into the cache on first use.

    Args:
        handle: `https://tfhub.dev/...`, `https://www.kaggle.com/models/...`, the same without
            `https://`, another `http(s)://` URL that serves a SavedModel tar archive, or a
            `gs://` folder or `.tar.gz`.
        timeout: seconds without an answer before a download fails.

    Raises:
        ValueError: not a hub handle.
        OSError: the download failed (`urllib.error.URLError` and the like), or the answer is
            not a tar archive.

    Example:
    ```python
    folder = resolve("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5")
    ```
    """
    if not is_hub_handle(handle):
        raise ValueError(f"Not a TF-Hub / Kaggle model handle: {handle!r}")
    handle = normalize(handle)
    if handle.startswith("gs://") and not handle.endswith((".tar", ".tar.gz", ".tgz")):
        return handle  # a SavedModel folder on GCS: tf.saved_model.load reads it there
    folder = module_dir(handle)
    if is_cached(handle):
        return folder
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(folder) + ".", suffix=".tmp", dir=cache_dir())
    try:
        with _open(handle, timeout) as stream:
            try:
                with tarfile.open(fileobj=stream, mode="r|*") as archive:
                    # No absolute paths, no `../` (the "data" filter, Python >= 3.11.4).
                    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                    archive.extractall(tmp, **safe)
            except tarfile.ReadError as err:
                raise OSError(f"{handle} did not answer with a SavedModel archive ({err})") from None
        if os.path.isdir(folder):  # an empty folder (e.g. left by an interrupted tool)
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(folder + ".descriptor.txt", "w", encoding="utf-8") as f:
        f.write(f"Module: {handle}\nDownload Time: {datetime.datetime.today()}\n"
                f"Downloader Hostname: {socket.gethostname()} (PID:{os.getpid()})")
    return folder


def _open(handle: str, timeout: float):
    if handle.startswith("gs://"):
        import tensorflow as tf

        return tf.io.gfile.GFile(handle, "rb")
    parts = list(urllib.parse.urlparse(handle))
    parts[4] = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts[4]), _FORMAT_QUERY])
    return urllib.request.urlopen(urllib.parse.urlunparse(parts), timeout=timeout)
