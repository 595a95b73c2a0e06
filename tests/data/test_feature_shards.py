"""extract_feature_shards(): sharded feature caches with a manifest, checksums and resume."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from tlkit import data as tld
from tlkit.data.features import feature_shards


class Doubler:
    """A feature model that counts the examples it sees."""

    def __init__(self, factor=2.0):
        self.factor = factor
        self.seen = 0

    def __call__(self, x):
        self.seen += int(x.shape[0])
        return np.asarray(x, "float32") * self.factor


@pytest.fixture
def ds():
    x = np.arange(50 * 3, dtype="float32").reshape(50, 3)
    y = np.arange(50) % 4
    return tf.data.Dataset.from_tensor_slices((x, y))


def _extract(model, ds, folder, **kwargs):
    kwargs.setdefault("describe", {"backbone": "doubler", "input_size": [3]})
    return tld.extract_feature_shards(model, ds, folder, shard_size=16, batch_size=8, **kwargs)


def test_shards_hold_every_feature_and_stream_in_order(ds, tmp_path):
    shards = _extract(Doubler(), ds, tmp_path)
    assert [s["count"] for s in shards.manifest["shards"]] == [16, 16, 16, 2]
    x, y = shards.arrays()
    np.testing.assert_array_equal(x, 2 * np.arange(150, dtype="float32").reshape(50, 3))
    streamed = list(shards.dataset().as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([a for a, _ in streamed]), x)
    np.testing.assert_array_equal([b for _, b in streamed], y)
    shuffled = np.stack([a for a, _ in shards.dataset(shuffle=True, seed=1).as_numpy_iterator()])
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, x))
    assert not np.array_equal(shuffled, x)


def test_a_matching_cache_is_reused_and_another_backbone_is_not(ds, tmp_path, caplog):
    _extract(Doubler(), ds, tmp_path)
    again = Doubler()
    _extract(again, ds, tmp_path)
    assert again.seen == 0
    other = Doubler(3.0)
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        shards = _extract(other, ds, tmp_path, describe={"backbone": "tripler", "input_size": [3]})
    assert other.seen == 50
    assert "not reused" in caplog.text and "tripler" in caplog.text
    np.testing.assert_array_equal(shards.arrays()[0][1], [9.0, 12.0, 15.0])
    assert len([f for f in os.listdir(tmp_path) if f.startswith("manifest-")]) == 1


def test_a_corrupt_shard_is_detected_and_extracted_again(ds, tmp_path, caplog):
    first = _extract(Doubler(), ds, tmp_path)
    victim = tmp_path / first.manifest["shards"][2]["x"]
    victim.write_bytes(victim.read_bytes()[:-8] + b"\0" * 8)
    model = Doubler()
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        shards = _extract(model, ds, tmp_path)
    assert "checksum" in caplog.text and model.seen == 50 - 32  # from the bad shard on
    np.testing.assert_array_equal(
        shards.arrays()[0], 2 * np.arange(150, dtype="float32").reshape(50, 3)
    )


@pytest.mark.parametrize("content", ["[]", '{"key": ', "\udcff", '{"key": [1], "shards": 3}'])
def test_a_damaged_manifest_is_rebuilt_not_a_traceback(ds, tmp_path, caplog, content):
    """#30: a manifest that is not JSON, not UTF-8 or of the wrong shape is ignored (warning)
    and the cache extracted again."""
    first = _extract(Doubler(), ds, tmp_path)
    (manifest,) = [f for f in os.listdir(tmp_path) if f.startswith("manifest-")]
    (tmp_path / manifest).write_bytes(content.encode("utf-8", "surrogateescape"))
    model = Doubler()
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        shards = _extract(model, ds, tmp_path)
    assert "Ignoring" in caplog.text and manifest in caplog.text and model.seen == 50
    np.testing.assert_array_equal(shards.arrays()[0], first.arrays()[0])


def test_a_killed_extraction_resumes_after_its_last_shard(ds, tmp_path):
    class Killed(Doubler):
        def __call__(self, x):
            if self.seen >= 24:
                raise KeyboardInterrupt  # stands in for a kill after 3 batches
            return super().__call__(x)

    with pytest.raises(KeyboardInterrupt):
        _extract(Killed(), ds, tmp_path)
    model = Doubler()
    shards = _extract(model, ds, tmp_path)
    assert model.seen == 50 - 16  # one complete shard was kept
    np.testing.assert_array_equal(shards.arrays()[0][-1], [294.0, 296.0, 298.0])


def test_running_out_of_disk_keeps_the_cache_written_so_far(ds, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = feature_shards._atomic_write

    def full_disk(path, write):
        calls["n"] += 1
        if calls["n"] == 7:  # per shard: x, y, manifest; 7 = the third shard's features
            raise OSError(28, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(feature_shards, "_atomic_write", full_disk)
    with pytest.raises(OSError, match="No space"):
        _extract(Doubler(), ds, tmp_path)
    monkeypatch.setattr(feature_shards, "_atomic_write", real)
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    model = Doubler()
    shards = _extract(model, ds, tmp_path)
    assert model.seen == 50 - 32 and shards.num_examples == 50


def test_a_cache_on_a_non_local_filesystem(ds):
    # TensorFlow's in-memory `ram://` filesystem stands in for `gs://`: same tf.io.gfile calls.
    folder = f"ram://tlkit-shards-{os.getpid()}/train"
    try:
        shards = _extract(Doubler(), ds, folder)
        assert shards.num_examples == 50
        assert tf.io.gfile.glob(folder + "/manifest-*.json")
        np.testing.assert_array_equal(shards.arrays()[0][-1], [294.0, 296.0, 298.0])
        streamed = np.stack([x for x, _ in shards.dataset().as_numpy_iterator()])
        np.testing.assert_array_equal(streamed, shards.arrays()[0])
        model = Doubler()
        again = _extract(model, ds, folder)  # reused from ram://, nothing extracted
        assert model.seen == 0 and again.num_examples == 50
        # A corrupt shard there is detected by its checksum and extracted again.
        first = folder + "/" + again.manifest["shards"][0]["x"]
        with tf.io.gfile.GFile(first, "wb") as f:
            f.write(b"not a shard")
        model = Doubler()
        _extract(model, ds, folder)
        assert model.seen == 50
    finally:
        if tf.io.gfile.exists(folder):
            tf.io.gfile.rmtree(folder)


@pytest.mark.parametrize("damage", ["meta_list", "features_text"])
def test_a_damaged_feature_array_cache_is_recomputed(ds, tmp_path, caplog, damage):
    """#30: `extract_feature_arrays`' cache (`features.json` + `.npy` files) damaged: recomputed
    with a warning naming it, not a traceback."""
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    first, _ = tld.extract_feature_arrays(model, ds, cache_dir=tmp_path, progress=False)
    target = {"meta_list": "features.json", "features_text": "features.features.npy"}[damage]
    (tmp_path / target).write_text("[]" if damage == "meta_list" else "not numpy")
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        again, _ = tld.extract_feature_arrays(model, ds, cache_dir=tmp_path, progress=False)
    assert "Recomputing cached features" in caplog.text and "damaged" in caplog.text
    np.testing.assert_allclose(again, first)
