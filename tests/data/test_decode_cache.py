"""from_image_folder's decode check: remembered per file, reused only while the file is unchanged."""

import logging
import os

import pytest

from tlkit import data as tld
from tlkit.data.sources import _images


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("TLKIT_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def decoded(monkeypatch):
    """The paths each call of the real decode check received."""
    calls = []
    real = _images._check_decode

    def spy(paths, channels):
        calls.append(sorted(os.path.basename(p) for p in paths))
        return real(paths, channels)

    monkeypatch.setattr(_images, "_check_decode", spy)
    return calls


@pytest.fixture
def folder(tmp_path):
    root = tld.make_image_folder(tmp_path / "imgs", ("a", "b"), per_class=3, image_size=(8, 8))
    (tmp_path / "imgs" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def _load(root, **kwargs):
    data = tld.from_image_folder(root, val_fraction=0.0, test_fraction=0.0, **kwargs)
    return sorted((os.path.basename(s.source), s.reason) for s in data.skipped), data


def test_second_load_of_an_unchanged_folder_decodes_nothing(folder, cache_dir, decoded):
    first, data = _load(folder)
    assert [name for name, _ in first] == ["broken.png"] and len(decoded[0]) == 7
    second, again = _load(folder)
    assert decoded == [decoded[0]]  # no second decode
    assert second == first  # the remembered failure, with its reason
    assert list(again.metadata["train"]["height"]) == list(data.metadata["train"]["height"])
    assert (cache_dir / "decode_checks.sqlite").exists()


def test_a_changed_file_is_decoded_again_even_with_its_old_mtime(folder, cache_dir, decoded):
    _load(folder)
    victim = os.path.join(folder, "b", os.listdir(os.path.join(folder, "b"))[0])
    stat = os.stat(victim)
    with open(victim, "r+b") as f:  # same size, corrupted body
        f.seek(16)
        f.write(b"\0" * (stat.st_size - 16))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime restored, as tar/rsync do
    skipped, _ = _load(folder)
    assert decoded[1] == [os.path.basename(victim)]
    assert [name for name, _ in skipped] == sorted(["broken.png", os.path.basename(victim)])


def test_check_cache_false_decodes_every_file(folder, cache_dir, decoded):
    _load(folder)
    _load(folder, check_cache=False)
    assert len(decoded[1]) == 7


@pytest.mark.parametrize("breakage", ["not_a_folder", "corrupt_file"])
def test_an_unusable_cache_warns_and_still_checks(folder, cache_dir, decoded, caplog, breakage):
    if breakage == "not_a_folder":
        cache_dir.write_text("a file where the cache folder should be")
    else:
        cache_dir.mkdir()
        (cache_dir / "decode_checks.sqlite").write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        skipped, _ = _load(folder)
    assert [name for name, _ in skipped] == ["broken.png"]
    assert "decode-check cache" in caplog.text and "TLKIT_CACHE_DIR" in caplog.text
