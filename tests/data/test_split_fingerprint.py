"""split_fingerprint(): covers every file of a split (path, size, mtime), not just the first batch."""

import logging
import os

import numpy as np
import tensorflow as tf

from tlkit import data as tld
from tlkit.data.features import feature_shards


def _folder_data(tmp_path):
    folder = tmp_path / "imgs"
    if not folder.exists():
        tld.make_image_folder(folder, per_class=6, splits=("train", "val"))
    return tld.from_image_folder(folder, image_size=(16, 16), check=None)


def _last_train_file(data):
    last = np.asarray(data.sources["train"].x)[-1]
    return last.decode() if isinstance(last, bytes) else str(last)


def test_changing_a_later_file_changes_the_fingerprint(tmp_path):
    data = _folder_data(tmp_path)
    before = tld.split_fingerprint(data, "train")
    assert before == tld.split_fingerprint(_folder_data(tmp_path), "train")  # reloaded: same
    assert before != tld.split_fingerprint(data, "val")
    last = _last_train_file(data)
    with open(last, "ab") as f:  # the last file of the split: not in any first batch
        f.write(b"\0")
    assert tld.split_fingerprint(data, "train") != before


def test_arrays_and_unknown_sources(tmp_path):
    x = np.zeros((5, 4), "float32")
    data = tld.from_numpy(x, np.arange(5) % 2, class_names=["a", "b"], val_fraction=0.0,
                          test_fraction=0.0)
    before = tld.split_fingerprint(data, "train")
    x2 = x.copy()
    x2[-1, -1] = 1.0
    changed = tld.from_numpy(x2, np.arange(5) % 2, class_names=["a", "b"], val_fraction=0.0,
                             test_fraction=0.0)
    assert tld.split_fingerprint(changed, "train") != before
    plain = tld.LabeledData(
        train=tf.data.Dataset.from_tensor_slices((x, np.arange(5))),
        class_names=["a", "b"],
        kind="features",
    )
    assert tld.split_fingerprint(plain, "train") is None


def test_a_changed_later_file_invalidates_the_feature_cache(tmp_path, caplog):
    data = _folder_data(tmp_path)
    model = tf.keras.layers.GlobalAveragePooling2D()  # any feature model

    def extract():
        return tld.extract_feature_shards(
            model,
            data.train,
            tmp_path / "cache",
            batch_size=4,
            shard_size=4,
            data_fingerprint=tld.split_fingerprint(data, "train"),
        )

    first = extract().arrays()[0]
    with caplog.at_level(logging.INFO, logger=feature_shards.__name__):
        extract()
    assert "Reusing" in caplog.text
    caplog.clear()
    last = _last_train_file(data)
    stat = os.stat(last)
    os.utime(last, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    with caplog.at_level(logging.INFO, logger=feature_shards.__name__):
        again = extract()
    assert "not reused" in caplog.text and "data" in caplog.text
    np.testing.assert_allclose(again.arrays()[0], first)
