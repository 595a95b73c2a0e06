"""from_tfds through the real TFDS builder path, offline: mock_data and a builder written here."""

import numpy as np
import pytest
import tensorflow as tf

# A hard dependency: imported, not skipped, so a broken install fails here (tensorflow-datasets
# 4.9.10 needs importlib_resources, which only tlkit's own dependencies install).
import tensorflow_datasets as tfds

from tlkit import data as tld


class TinyShapes(tfds.core.GeneratorBasedBuilder):
    """A 2-class image data set generated locally (no download)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 3)),
                    "label": tfds.features.ClassLabel(names=["circle", "square"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(20), "test": self._generate_examples(6)}

    def _generate_examples(self, n):
        rng = np.random.default_rng(n)
        for i in range(n):
            image = np.full((8, 8, 3), 40 + 200 * (i % 2), np.uint8)
            image[0, 0] = rng.integers(0, 255, 3)
            yield i, {"image": image, "label": i % 2}


def test_from_tfds_mock_data_mnist():
    with tfds.testing.mock_data(num_examples=6):
        data = tld.from_tfds("mnist", split="train[:80%]", image_size=(12, 12))
    assert data.class_names == [str(i) for i in range(10)]
    assert set(data.splits) == {"train", "val", "test"}
    assert data.element_spec[0] == tf.TensorSpec((12, 12, 1), tf.float32)
    assert data.element_spec[1].dtype == tf.int64
    x, y = next(iter(data.train))
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255.0
    assert "train[80%:]" in data.name


def test_from_tfds_local_builder_in_data_dir(tmp_path):
    TinyShapes(data_dir=str(tmp_path)).download_and_prepare()
    data = tld.from_tfds("tiny_shapes", split="train[:75%]", data_dir=str(tmp_path), download=False)
    assert data.class_names == ["circle", "square"]
    assert {s: data.num_examples(s) for s in data.splits} == {"train": 15, "val": 5, "test": 6}
    assert data.input_shape == (8, 8, 3) and data.input_dtype == "float32"
    counts = data.class_counts("test")
    assert counts == {"circle": 3, "square": 3}
    # No SplitSource for TFDS data: subsample filters the stream and stays balanced.
    small = tld.subsample(data, 2, seed=0)
    assert small.class_counts() == {"circle": 2, "square": 2}
    assert len(list(small.train)) == 4
    # as_supervised=False reads the named features.
    raw = tld.from_tfds(
        "tiny_shapes",
        split="train",
        val_split=None,
        test_split=None,
        data_dir=str(tmp_path),
        as_supervised=False,
        download=False,
    )
    assert list(raw.splits) == ["train"] and raw.num_examples("train") == 20
    with pytest.raises(ValueError, match="no feature 'nope'"):
        tld.from_tfds(
            "tiny_shapes", data_dir=str(tmp_path), as_supervised=False, x_key="nope", download=False
        )


def test_from_tfds_unknown_name():
    with pytest.raises(tfds.core.DatasetNotFoundError):
        tld.from_tfds("no_such_dataset_tlkit")


def test_from_tfds_prepare_failure_says_what_to_do(tmp_path, monkeypatch):
    def offline(self, dl_manager):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(TinyShapes, "_split_generators", offline)
    with pytest.raises(RuntimeError, match=r"could not prepare 'tiny_shapes'.*offline.*data_dir"):
        tld.from_tfds("tiny_shapes", data_dir=str(tmp_path / "fresh"))
