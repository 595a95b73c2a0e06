"""tlkit's own TF-Hub handle resolver (`tlkit._hub_cache`), against a local HTTP server that
answers as tfhub.dev / Kaggle do (`?tf-hub-format=compressed` -> a tar archive): no network,
no `tensorflow_hub` import."""

import hashlib
import http.server
import io
import os
import sys
import tarfile
import threading

import numpy as np
import pytest

from tlkit import _hub_cache
from tlkit.backbones import HubHandleError, from_hub


@pytest.fixture
def server(image_savedmodel):
    """Serves `image_savedmodel` as a compressed TF-Hub module; records the request paths."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(image_savedmodel, arcname=".")
    payload = buffer.getvalue()
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path.startswith("/redirect"):  # tfhub.dev redirects to Kaggle
                self.send_response(302)
                self.send_header("Location", self.path.replace("/redirect", "/models", 1))
                self.end_headers()
                return
            body = payload if "tf-hub-format=compressed" in self.path else b"<html>page</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def test_a_handle_downloads_once_into_tf_hubs_cache_layout(server, tmp_path, monkeypatch):
    url, requests = server
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    handle = f"{url}/redirect/google/tiny/1"
    folder = _hub_cache.resolve(handle)
    assert folder == str(tmp_path / "cache" / hashlib.sha1(handle.encode()).hexdigest())
    assert os.path.isfile(os.path.join(folder, "saved_model.pb"))
    assert os.path.isfile(folder + ".descriptor.txt")
    assert requests == ["/redirect/google/tiny/1?tf-hub-format=compressed",
                        "/models/google/tiny/1?tf-hub-format=compressed"]
    assert [p for p in os.listdir(tmp_path / "cache") if p.endswith(".tmp")] == []
    assert _hub_cache.resolve(handle) == folder and len(requests) == 2  # from the cache
    assert _hub_cache.is_cached(handle)


def test_a_handle_builds_a_backbone_whose_outputs_match_the_folder(server, tmp_path, monkeypatch,
                                                                   image_savedmodel):
    url, _ = server
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    x = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    from_url = np.asarray(from_hub(f"{url}/models/tiny/1")(x))
    np.testing.assert_allclose(from_url, np.asarray(from_hub(str(image_savedmodel))(x)))


def test_a_failed_download_is_one_error_and_leaves_no_folder(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    handle = f"{url}/models/tiny/1?tf-hub-format=uncompressed-page"
    monkeypatch.setattr(_hub_cache, "_FORMAT_QUERY", ("format", "page"))  # answers HTML
    with pytest.raises(HubHandleError, match="did not answer with a SavedModel archive"):
        from_hub(handle)
    assert os.listdir(tmp_path / "cache") == []
    with pytest.raises(HubHandleError, match="may be offline.*TFHUB_CACHE_DIR"):
        from_hub("http://127.0.0.1:9/models/nothing/1")  # nothing listens on port 9


def test_schemeless_handles_share_the_https_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    assert _hub_cache.module_dir("tfhub.dev/google/x/5") == _hub_cache.module_dir(
        "https://tfhub.dev/google/x/5")


def test_loading_a_handle_needs_no_tensorflow_hub(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    for module in ("tensorflow_hub", "tf_keras", "pkg_resources"):  # as if not installed
        monkeypatch.setitem(sys.modules, module, None)
    assert from_hub(f"{url}/models/tiny/1").variable_names
