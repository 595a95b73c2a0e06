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


def _tfds_recipe(path, data_dir, name="tiny_shapes"):
    path.write_text(
        "backbone: {name: tiny}\n"
        f"data: {{source: tfds, name: {name}, batch_size: 8,\n"
        "       splits: {train: 'train[:75%]', val: 'train[75%:]', test: test},\n"
        f"       options: {{data_dir: '{data_dir}'}}}}\n"
        "phases: {head_epochs: 1, fine_epochs: 1, schedule: all}\n"
        "output: {tensorboard: false}\n"
    )
    return str(path)


@pytest.mark.slow
def test_tfds_recipe_trains_from_a_prepared_data_dir(tmp_path, capsys):
    """The recipe runner through TFDS's real builder/`as_dataset` path, offline."""
    from tlkit import cli
    from tlkit.runner.rundir import RunDir

    TinyShapes(data_dir=str(tmp_path / "tfds")).download_and_prepare()
    recipe = _tfds_recipe(tmp_path / "r.yaml", tmp_path / "tfds")
    assert cli.main(["-q", "train", recipe, "--output", str(tmp_path / "run")]) == 0
    run = RunDir(tmp_path / "run")
    assert run.complete and run.class_names() == ["circle", "square"]
    assert run.read_json("metrics.json")["num_examples"] == 6  # the TFDS test split


def test_tfds_recipe_offline_fails_at_once_naming_the_recipe_key(tmp_path, capsys, monkeypatch):
    from tlkit import cli
    from tlkit.recipes import preflight

    probes = []
    monkeypatch.setattr(preflight, "is_online", lambda host=None: probes.append(host) or False)

    def no_download(self, *args, **kwargs):
        raise AssertionError("download_and_prepare must not be reached offline")

    monkeypatch.setattr(TinyShapes, "download_and_prepare", no_download)
    recipe = _tfds_recipe(tmp_path / "r.yaml", tmp_path / "empty")
    assert cli.main(["-q", "train", recipe, "--output", str(tmp_path / "run")]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("tlkit: error: data: TFDS data set 'tiny_shapes' is not prepared")
    assert "data.options.data_dir" in line and "TFDS_DATA_DIR" in line
    assert not (tmp_path / "run").exists() and probes
