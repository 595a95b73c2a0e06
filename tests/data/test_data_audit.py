"""audit(): class balance, corrupt files, odd sizes/modes, duplicates, leakage, unknown labels."""

import json
import logging
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tlkit import data as tld


def _save(path, pixels, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)
    return path


def _noise(rng, shape=(32, 32, 3)):
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def split_folder(tmp_path):
    """train/val/test with one of every problem the audit looks for."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for label in ("cat", "dog"):
            for k in range(n):
                _save(root / split / label / f"{k}.png", _noise(rng))
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _save(root / "train" / "dog" / "grey.png", _noise(rng, (32, 32)))  # mode L
    _save(root / "val" / "cat" / "strip.png", _noise(rng, (20, 500, 3)))  # 20 x 500
    shutil.copy(root / "train" / "cat" / "0.png", root / "val" / "dog" / "copy_of_train.png")
    shutil.copy(root / "train" / "dog" / "1.png", root / "train" / "dog" / "twin.png")
    base = np.asarray(Image.open(root / "train" / "cat" / "2.png")).astype("int16")
    shifted = np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
    _save(root / "test" / "cat" / "near_copy.png", shifted)
    _save(root / "test" / "bird" / "0.png", _noise(rng))  # class not in train
    (root / "train" / "README.txt").write_text("not an image")
    return root


def _pixel_embedding(batch):
    """Stands in for a backbone: mean-centred pixels of a small thumbnail."""
    small = tf.image.resize(tf.convert_to_tensor(batch), (16, 16))
    flat = tf.reshape(small, [tf.shape(small)[0], -1])
    return flat - tf.reduce_mean(flat, axis=1, keepdims=True)


def _refs(entries):
    return {f"{e['split']}:{e['item']}" for e in entries}


def test_audit_split_folder_finds_every_problem(split_folder):
    report = tld.audit(split_folder, backbone_model=_pixel_embedding, near_dup_threshold=0.98)
    assert report.splits == ["train", "val", "test"]
    assert report.class_names == ["cat", "dog"]
    assert report.class_counts["train"] == {"cat": 5, "dog": 6}
    assert report.imbalance_ratio["train"] == pytest.approx(6 / 5)
    assert _refs(report.unreadable) == {"train:train/cat/broken.jpg"}
    unexpected = {f"{e['split']}:{e['item']}": e["issue"] for e in report.unexpected}
    assert set(unexpected) == {"train:train/dog/grey.png", "val:val/cat/strip.png"}
    assert "mode L" in unexpected["train:train/dog/grey.png"]
    assert "size 20x500" in unexpected["val:val/cat/strip.png"]
    assert report.dominant_size == [32, 32] and report.dominant_mode == "RGB"
    groups = [_refs(g["items"]) for g in report.exact_duplicates]
    assert {"train:train/cat/0.png", "val:val/dog/copy_of_train.png"} in groups
    assert {"train:train/dog/1.png", "train:train/dog/twin.png"} in groups
    assert report.exact_duplicates[0]["cross_split"]  # leaks sort first
    near = [(_refs([p["a"], p["b"]]), p["cross_split"]) for p in report.near_duplicates]
    assert near == [({"train:train/cat/2.png", "test:test/cat/near_copy.png"}, True)]
    assert _refs(report.unknown_labels) == {"test:test/bird/0.png"}
    assert report.has_leakage and len(report.leaks) == 2
    assert any("README.txt" in note for note in report.notes)


def test_report_text_json_and_save(split_folder, tmp_path):
    report = tld.audit(split_folder)
    text = report.to_text()
    for expected in (
        "Unreadable / corrupt files: 1",
        "train/cat/broken.jpg",
        "ACROSS SPLITS",
        "leakage across splits: YES",
        "imbalance ratio 1.20",
        "Near duplicates: not searched",
    ):
        assert expected in text
    loaded = json.loads(report.to_json())
    assert loaded["has_leakage"] is True and loaded["class_counts"]["val"]["cat"] == 3
    path = report.save(tmp_path / "out" / "audit.json")
    assert json.load(open(path))["splits"] == ["train", "val", "test"]
    assert "Data audit" in open(report.save(tmp_path / "audit.txt")).read()


def test_check_no_leakage(split_folder, caplog):
    report = tld.audit(split_folder, splits=["train", "val"])
    with pytest.raises(
        tld.DataLeakageError,
        match=r"train:train/cat/0.png == "
        r"val:val/dog/copy_of_train.png.*allow=True",
    ):
        tld.check_no_leakage(report)
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        leaks = tld.check_no_leakage(report, allow=True)
    assert len(leaks) == 1 and "copy_of_train.png" in caplog.text
    clean = tld.audit(split_folder, splits=["test"])
    assert not clean.has_leakage and tld.check_no_leakage(clean) == []


def test_audit_single_folder_and_sampling(tmp_path):
    root = tld.make_image_folder(tmp_path / "one", ("a", "b"), per_class=6)
    report = tld.audit(root, max_images=6)
    assert report.splits == ["all"] and report.num_examples["all"] == 6
    assert any("sample of 6 of 12" in note for note in report.notes)
    assert not report.has_issues
    with pytest.raises(FileNotFoundError, match="missing"):
        tld.audit(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="No class subfolders"):
        tld.audit(tmp_path / "flat")
    with pytest.raises(ValueError, match="Expected an image folder path"):
        tld.audit(42)


def test_audit_labeled_data_and_arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12, 6, 6, 3)).astype("uint8")
    x[7] = x[2]
    val_x = np.concatenate([rng.integers(0, 255, (3, 6, 6, 3)), x[4:5]]).astype("uint8")
    data = tld.from_numpy(
        x[:8], np.arange(8) % 2, class_names=["a", "b"], val=(val_x, [0, 1, 0, 1]),
        test_fraction=0.0,
    )
    report = tld.audit(data)
    assert report.splits == ["train", "val"]
    assert report.class_counts == {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 2}}
    assert [g["cross_split"] for g in report.exact_duplicates] == [True, False]
    assert report.has_leakage
    assert not report.unexpected and report.dominant_size == [6, 6]
    # Arrays: labels outside the class list are listed by index.
    arrays = tld.audit(
        {"train": (x[:6], [0, 1, 0, 1, 5, 1]), "test": (x[6:], [0] * 6)}, class_names=["a", "b"]
    )
    assert arrays.unknown_labels == [{"split": "train", "item": "#4", "label": 5}]
    assert arrays.has_leakage  # x[7] (test) == x[2] (train)
    texts = tld.audit((np.asarray(["hi", "yo", "hi"]), np.asarray([0, 1, 1])))
    assert _refs(texts.exact_duplicates[0]["items"]) == {"all:#0", "all:#2"}
    with pytest.raises(ValueError, match=r"len\(x\)=2, len\(y\)=3"):
        tld.audit((np.zeros((2, 3)), np.zeros(3)))


def test_one_content_under_two_classes_is_a_label_conflict():
    texts = np.asarray(["hi", "yo", "hi", "ok", "ok"])
    report = tld.audit((texts, np.asarray([0, 1, 1, 0, 0])), class_names=["neg", "pos"])
    assert [g["label_conflict"] for g in report.exact_duplicates] == [True, False]
    assert len(report.label_conflicts) == 1
    text = report.to_text()
    assert "Label conflicts (same content, different classes): 1" in text
    assert "all:#0 labelled 'neg' vs all:#2 labelled 'pos'" in text
    assert "Exact duplicates: 1" in text  # "ok" twice, same label: only a copy
    assert "backbone_model=" not in text or "in Python" in text
    assert json.loads(report.to_json())["label_conflicts"][0]["items"][1]["label"] == 1


def test_audit_sampling_is_a_logged_warning(tmp_path, caplog):
    root = tld.make_image_folder(tmp_path / "one", ("a", "b"), per_class=6)
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        tld.audit(root, max_images=6)
    assert "sample of 6 of 12" in caplog.text and "max_images=None" in caplog.text


def test_audit_searches_near_duplicates_over_every_example():
    """More examples than the old 20,000 default sample: a leak at the very end is still found."""
    rng = np.random.default_rng(0)
    train = rng.standard_normal((20_500, 32)).astype("float32")
    test = rng.standard_normal((600, 32)).astype("float32")
    test[-1] = train[-1] + 0.01 * rng.standard_normal(32).astype("float32")
    report = tld.audit(
        {"train": (train, np.zeros(len(train), "int64")), "test": (test, np.zeros(600, "int64"))},
        backbone_model=lambda x: x,
    )
    assert report.num_examples == {"train": 20_500, "test": 600}
    assert not any("sample" in note for note in report.notes)
    assert [(p["a"]["item"], p["b"]["item"], p["cross_split"]) for p in report.near_duplicates] == [
        ("#20499", "#599", True)
    ]
    assert report.has_leakage


def test_audit_embeddings_in_a_sharded_cache_are_reused(split_folder, tmp_path):
    calls = {"rows": 0}

    def counting(batch):
        calls["rows"] += int(batch.shape[0])
        return _pixel_embedding(batch)

    plain = tld.audit(split_folder, backbone_model=_pixel_embedding, near_dup_threshold=0.98)
    cached = tld.audit(split_folder, backbone_model=counting, near_dup_threshold=0.98,
                       embedding_cache_dir=tmp_path / "emb")
    assert cached.near_duplicates == plain.near_duplicates
    assert calls["rows"] > 0 and list((tmp_path / "emb").glob("manifest-*.json"))
    calls["rows"] = 0
    again = tld.audit(split_folder, backbone_model=counting, near_dup_threshold=0.98,
                      embedding_cache_dir=tmp_path / "emb")
    assert again.near_duplicates == plain.near_duplicates
    assert calls["rows"] == 0  # nothing embedded again
    with pytest.raises(ValueError, match="embedding_cache_dir"):
        tld.audit(split_folder, backbone_model=counting, worker=(0, 2))
