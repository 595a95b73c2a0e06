"""Loaders of tlkit.data: image folders, CSV, text folders, NumPy; splits and subsampling."""

import io
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tlkit import data as tld


def _write_truncated_jpeg(path):
    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 24, 3), 128, np.uint8)).save(buffer, "JPEG")
    with open(path, "wb") as f:
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 3])


def _labels_from_paths(data, split):
    """Class name of each example, read from its file's folder."""
    return [os.path.basename(os.path.dirname(p)) for p in data.metadata[split]["path"]]


# -- image folders -----------------------------------------------------------------------------
def test_image_folder_skips_corrupt_files_up_front(tmp_path, caplog):
    root = tld.make_image_folder(tmp_path / "img", ("cat", "dog"), per_class=5, image_size=(12, 12))
    _write_truncated_jpeg(tmp_path / "img" / "cat" / "broken.jpg")
    (tmp_path / "img" / "dog" / "garbage.png").write_bytes(b"not an image at all")
    (tmp_path / "img" / "dog" / "notes.md").write_text("ignored: not an image extension")
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        data = tld.from_image_folder(root, val_fraction=0.4, test_fraction=0.0, seed=0)
    skipped = sorted(os.path.basename(s.source) for s in data.skipped)
    assert skipped == ["broken.jpg", "garbage.png"]
    assert "broken.jpg" in caplog.text and "garbage.png" in caplog.text
    assert all(s.reason for s in data.skipped)
    assert data.class_names == ["cat", "dog"] and data.kind == "image"
    assert data.num_examples("train") == 6 and data.num_examples("val") == 4
    assert data.class_counts("val") == {"cat": 2, "dog": 2}
    # A whole epoch runs without a decoding error, as float32 [0, 255] with a static shape.
    xs, ys = zip(*tld.batch(data.train, 4, training=True, seed=0).as_numpy_iterator())
    assert np.concatenate(xs).shape == (6, 12, 12, 3)
    assert np.concatenate(xs).dtype == np.float32 and np.concatenate(xs).max() > 1.0
    # Labels, metadata and the dataset line up, example by example.
    names = [data.class_names[y] for _, y in data.train.as_numpy_iterator()]
    assert names == _labels_from_paths(data, "train")
    assert list(data.labels["train"]) == [data.class_names.index(n) for n in names]


def test_image_folder_split_layout_resize_and_formats(tmp_path):
    root = tmp_path / "splits"
    tld.make_image_folder(
        root, ("a", "b"), per_class=3, image_size=(10, 14), splits=("train", "val")
    )
    tld.make_image_folder(
        root / "test", ("a", "b"), per_class=2, image_size=(20, 20), image_format="bmp"
    )
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / "train" / "a" / "grey.gif")
    data = tld.from_image_folder(root, image_size=(8, 8), test_fraction=0.5)
    assert {s: data.num_examples(s) for s in data.splits} == {"train": 7, "val": 6, "test": 4}
    assert data.input_shape == (8, 8, 3)
    x, _ = next(iter(data.test))
    assert x.shape == (8, 8, 3)
    # Without image_size mixed sizes keep an unknown static shape (batching then needs a resize).
    mixed = tld.from_image_folder(root)
    assert mixed.input_shape == (None, None, 3)


def test_image_folder_same_seed_same_split(tmp_path):
    root = tld.make_image_folder(tmp_path / "s", ("a", "b", "c"), per_class=6)
    one = tld.from_image_folder(root, val_fraction=0.5, seed=3)
    two = tld.from_image_folder(root, val_fraction=0.5, seed=3)
    other = tld.from_image_folder(root, val_fraction=0.5, seed=4)
    assert list(one.metadata["val"]["path"]) == list(two.metadata["val"]["path"])
    assert sorted(one.metadata["val"]["path"]) != sorted(other.metadata["val"]["path"])
    assert one.class_counts("val") == {"a": 3, "b": 3, "c": 3}


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        tld.from_image_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No class subfolders"):
        tld.from_image_folder(tmp_path / "empty")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "b").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"No image files .*\.jpg"):
        tld.from_image_folder(tmp_path / "noimg")
    one = tld.make_image_folder(tmp_path / "one", ("only",), per_class=2)
    with pytest.raises(ValueError, match="only 1 class .*'only'"):
        tld.from_image_folder(one)
    root = tmp_path / "extra"
    tld.make_image_folder(root, ("a", "b"), per_class=2, splits=("train",))
    tld.make_image_folder(root, ("a", "dgo"), per_class=2, splits=("val",))
    with pytest.raises(ValueError, match="'val'.*'dgo'"):
        tld.from_image_folder(root)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="Received a file"):
        tld.from_image_folder(a_file)


# -- CSV ---------------------------------------------------------------------------------------
def test_csv_images_and_bad_rows(tmp_path, caplog):
    root = tld.make_image_folder(tmp_path / "imgs", ("cat", "dog"), per_class=3)
    rows = ["file,label"]
    for name in ("cat", "dog"):
        rows += [f"{name}/{name}_all_{k}.png,{name}" for k in range(3)]
    (tmp_path / "ok.csv").write_text("\n".join(rows) + "\n")
    data = tld.from_csv(
        tmp_path / "ok.csv", x_col="file", y_col="label", base_dir=root, val_fraction=0.34
    )
    assert data.class_names == ["cat", "dog"] and data.num_examples("val") == 2
    assert set(data.metadata["train"]) == {"row", "path"}
    x, _ = next(iter(data.train))
    assert x.shape == (16, 16, 3)

    bad = rows + ["cat/missing.png,cat", ",dog", "dog/dog_all_0.png"]
    (tmp_path / "bad.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(
        ValueError,
        match=r"3 bad row\(s\).*row 7 \(line 8\).*not found.*row 8.*"
        r"empty 'file'.*row 9.*fewer fields",
    ):
        tld.from_csv(tmp_path / "bad.csv", x_col="file", y_col="label", base_dir=root)
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        skipped = tld.from_csv(
            tmp_path / "bad.csv", x_col="file", y_col="label", base_dir=root, on_bad_rows="skip"
        )
    assert len(skipped.skipped) == 3 and "row 7" in skipped.skipped[0].source
    assert "bad row" in caplog.text


def test_csv_missing_column_names_present_columns(tmp_path):
    (tmp_path / "t.csv").write_text("text,sentiment\nhello,pos\n")
    with pytest.raises(ValueError, match=r"Column 'label' not found .*\['text', 'sentiment'\]"):
        tld.from_csv(tmp_path / "t.csv", x_col="text", y_col="label", kind="text")
    with pytest.raises(FileNotFoundError, match="no.csv"):
        tld.from_csv(tmp_path / "no.csv", x_col="a", y_col="b")


def test_csv_text_labels_and_encoding(tmp_path):
    lines = ["text,label"] + [f'"tweet {i}, with comma",{["neg", "pos"][i % 2]}' for i in range(8)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="latin-1")
    data = tld.from_csv(tmp_path / "t.csv", "text", "label", kind="text", val_fraction=0.25)
    x, _ = next(iter(data.train))
    assert x.dtype == tf.string and b"with comma" in x.numpy()
    assert data.class_names == ["neg", "pos"]
    (tmp_path / "l1.csv").write_bytes("text,label\ncaf\xe9,a\nb,b\n".encode("latin-1"))
    with pytest.raises(ValueError, match="encoding='latin-1'"):
        tld.from_csv(tmp_path / "l1.csv", "text", "label", kind="text")
    latin = tld.from_csv(
        tmp_path / "l1.csv", "text", "label", kind="text", encoding="latin-1", val_fraction=0.0,
        test_fraction=0.0,
    )
    assert "café" in {x.decode("utf-8") for x, _ in latin.train.as_numpy_iterator()}
    with pytest.raises(ValueError, match=r"row 2 \(line 3\): label 'b' is not in class_names"):
        tld.from_csv(
            tmp_path / "l1.csv",
            "text",
            "label",
            kind="text",
            encoding="latin-1",
            class_names=["a", "c"],
        )


# -- text folders ------------------------------------------------------------------------------
def test_text_files(tmp_path, caplog):
    for label in ("neg", "pos"):
        (tmp_path / "t" / label).mkdir(parents=True)
        for k in range(3):
            (tmp_path / "t" / label / f"{k}.txt").write_text(f"{label} review {k}\n")
    (tmp_path / "t" / "pos" / "bad.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        data = tld.from_text_files(tmp_path / "t", val_fraction=0.34)
    assert [os.path.basename(s.source) for s in data.skipped] == ["bad.txt"]
    assert "bad.txt" in caplog.text
    assert data.kind == "text" and data.num_examples("val") == 2
    for (x, y), path in zip(data.train.as_numpy_iterator(), data.metadata["train"]["path"]):
        assert x.decode().startswith(data.class_names[y]) and data.class_names[y] in path


# -- NumPy -------------------------------------------------------------------------------------
def test_numpy_kinds_and_explicit_splits():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (20, 6, 6), dtype=np.uint8)
    data = tld.from_numpy(grey, np.arange(20) % 2, class_names=["a", "b"], val_fraction=0.2)
    assert data.kind == "image" and data.input_shape == (6, 6, 1) and data.input_dtype == "float32"
    assert data.class_counts("val") == {"a": 2, "b": 2}
    feats = tld.from_numpy(
        rng.normal(size=(10, 4)),
        ["x", "y"] * 5,
        val_fraction=0.0, test_fraction=0.0,
        val=(rng.normal(size=(4, 4)), ["y", "x", "x", "y"]),
    )
    assert feats.kind == "features" and feats.class_names == ["x", "y"]
    assert feats.num_examples("train") == 10 and feats.num_examples("val") == 4
    texts = tld.from_numpy(
        np.asarray(["good", "bad", "fine", "awful"]), [1, 0, 1, 0], val_fraction=0.0,
        test_fraction=0.0,
    )
    assert texts.kind == "text" and texts.class_names == ["0", "1"]


def test_numpy_errors_name_lengths_index_and_value():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"len\(x\)=5, len\(y\)=4"):
        tld.from_numpy(x, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"y\[3\] = 7 is outside \[0, 2\)"):
        tld.from_numpy(x, [0, 1, 0, 7, 1], class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"y\[1\] = -1 is outside"):
        tld.from_numpy(x, [0, -1, 0, 1, 1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        tld.from_numpy(x, [0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"y_val\[0\] = 5"):
        tld.from_numpy(x, [0, 1, 0, 1, 1], val=(np.zeros((1, 3)), [5]), class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"np.argmax\(y, axis=1\)"):
        tld.from_numpy(x, np.eye(5)[:, :2])
    with pytest.raises(ValueError, match=r"y\[2\] = 'c' is not in class_names"):
        tld.from_numpy(x, ["a", "b", "c", "a", "b"], class_names=["a", "b"])


# -- subsample, select, LabeledData -------------------------------------------------------------
def test_subsample_is_balanced_nested_and_checked():
    y = np.repeat(np.arange(3), 20)
    data = tld.from_numpy(np.arange(60, dtype="float32")[:, None], y, val_fraction=0.0,
                          test_fraction=0.0)
    five = tld.subsample(data, 5, seed=1)
    ten = tld.subsample(data, 10, seed=1)
    assert five.class_counts() == {"0": 5, "1": 5, "2": 5}
    ids5 = {float(x[0]) for x, _ in five.train.as_numpy_iterator()}
    ids10 = {float(x[0]) for x, _ in ten.train.as_numpy_iterator()}
    assert ids5 < ids10
    with pytest.raises(ValueError, match=r"fewer than per_class=25.*'0': 20"):
        tld.subsample(data, 25)
    assert tld.subsample(data, 25, allow_fewer=True).num_examples("train") == 60


def test_labeled_data_validation():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2)), np.zeros(4, "int64")))
    with pytest.raises(ValueError, match="at least 2 classes"):
        tld.LabeledData(train=ds, class_names=["a"])
    with pytest.raises(ValueError, match="kind"):
        tld.LabeledData(train=ds, class_names=["a", "b"], kind="audio")
    with pytest.raises(ValueError, match="unbatched"):
        tld.LabeledData(train=ds.batch(2), class_names=["a", "b"])
    data = tld.LabeledData(train=ds, class_names=["a", "b"], kind="features")
    with pytest.raises(ValueError, match="no `val` split"):
        data.split("val")
    # Without a SplitSource, select filters the stream (in order).
    picked = data.select("train", [3, 1])
    assert picked.num_examples("train") == 2 and len(list(picked.train)) == 2


# -- pipeline ----------------------------------------------------------------------------------
def test_batch_shuffles_with_seed_only_in_training():
    ds = tf.data.Dataset.from_tensor_slices((np.arange(50, dtype="float32"), np.zeros(50, "int64")))

    def order(pipeline):
        return np.concatenate([x for x, _ in pipeline.as_numpy_iterator()]).tolist()

    a = order(tld.batch(ds, 8, training=True, seed=1, deterministic=True))
    b = order(tld.batch(ds, 8, training=True, seed=1, deterministic=True))
    assert a == b and a != list(range(50)) and sorted(a) == list(range(50))
    assert order(tld.batch(ds, 8, training=False)) == list(range(50))
    dropped = tld.batch(ds, 8, training=False, drop_remainder=True, map_fn=lambda x, y: (x * 2, y))
    assert dropped.element_spec[0].shape.as_list() == [8]
    assert order(dropped)[:3] == [0.0, 2.0, 4.0]
    assert (
        tld.batch(ds, 8, training=True, seed=0, deterministic=False).options().deterministic
        is False
    )
    with pytest.raises(ValueError, match="batch_size"):
        tld.batch(ds, 0, training=True)


def test_labeled_data_pipeline_shuffles_before_decoding(tmp_path, caplog):
    root = tld.make_image_folder(tmp_path / "p", ("a", "b"), per_class=6, image_size=(8, 8))
    data = tld.from_image_folder(root, val_fraction=0.0, test_fraction=0.0)

    def epoch(ds):
        return [tuple(map(float, x[:, 0, 0, 0])) for x, _ in ds.as_numpy_iterator()]

    pipe = data.pipeline("train", 5, seed=3)
    first, second = epoch(pipe), epoch(pipe)
    assert sorted(sum(first, ())) == sorted(sum(second, ())) and first != second
    assert epoch(data.pipeline("train", 5, seed=3)) == first  # same seed, same epochs
    expected = [float(x[0, 0, 0]) for x, _ in data.train.as_numpy_iterator()]
    assert sum(epoch(data.pipeline("train", 5, training=False)), ()) == tuple(expected)
    # Images of unknown size get a warning before batching.
    ds = tf.data.Dataset.from_generator(
        lambda: iter([(np.zeros((3, 4, 3), "float32"), 0)]),
        output_signature=(tf.TensorSpec((None, None, 3)), tf.TensorSpec((), tf.int32)),
    )
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        tld.batch(ds, 2, training=False)
    assert "image_size=" in caplog.text
