"""The unlabelled pool: loaders (`unlabeled=`, `x_unlabeled=`), recipes' data.unlabeled, audit."""

import shutil

import numpy as np
import pytest
from PIL import Image

from tlkit import data as tld
from tlkit.recipes import RecipeError, load_recipe
from tlkit.runner.data import load_data


def _pool(path, n=3, size=(16, 16), seed=1):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path / f"u{k}.png")
    return path


def test_image_folder_unlabeled_pool_is_decoded_like_train(tmp_path):
    root = tld.make_image_folder(tmp_path / "lab", per_class=4)
    pool = _pool(tmp_path / "pool" / "nested")
    (pool / "broken.png").write_bytes(b"not a png")
    data = tld.from_image_folder(root, unlabeled=tmp_path / "pool", check_cache=False)
    assert data.num_examples("unlabeled") == 3
    paths = data.metadata["unlabeled"]["path"]
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["u0.png", "u1.png", "u2.png"]
    assert any(s.source.endswith("broken.png") for s in data.skipped)
    first = next(iter(data.unlabeled)).numpy()
    assert first.shape == (16, 16, 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first, np.asarray(Image.open(paths[0]), dtype="float32"))
    # Carried through maps and resizes, and the labelled splits are untouched.
    small = data.resized(8)
    assert next(iter(small.unlabeled)).shape == (8, 8, 3)
    assert small.num_examples("train") == data.num_examples("train")
    assert "unlabeled: 3 examples" in data.summary()


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing", "folder not found"),
        ("empty", "no image files"),
        ("same", "is the labelled folder"),
        ("inside", "is inside the labelled folder"),
        ("broken", "none of the 2 image files"),
    ],
)
def test_image_folder_bad_unlabeled_is_one_line(tmp_path, where, message):
    root = tld.make_image_folder(tmp_path / "lab", per_class=3)
    pool = {
        "missing": tmp_path / "nope",
        "empty": tmp_path / "empty",
        "same": tmp_path / "lab",
        "inside": tmp_path / "lab" / "circle",
        "broken": tmp_path / "broken",
    }[where]
    if where == "empty":
        pool.mkdir()
        (pool / "notes.txt").write_text("x")
    if where == "broken":
        pool.mkdir()
        for k in range(2):
            (pool / f"{k}.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        tld.from_image_folder(root, unlabeled=pool, check_cache=False)
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("unlabeled:")


def test_text_files_unlabeled(tmp_path):
    for label in ("pos", "neg"):
        (tmp_path / "lab" / label).mkdir(parents=True)
        for k in range(3):
            (tmp_path / "lab" / label / f"{k}.txt").write_text(f"{label} text {k}")
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "a.txt").write_text("  an unlabelled review ")
    (tmp_path / "pool" / "empty.txt").write_text("   ")
    data = tld.from_text_files(tmp_path / "lab", unlabeled=tmp_path / "pool",
                               val_fraction=0, test_fraction=0)
    assert [t.decode() for t in data.unlabeled.as_numpy_iterator()] == ["an unlabelled review"]
    assert any(s.source.endswith("empty.txt") for s in data.skipped)
    with pytest.raises(ValueError, match="unlabeled: .* is the labelled folder"):
        tld.from_text_files(tmp_path / "lab", unlabeled=tmp_path / "lab")


def test_numpy_unlabeled_and_shape_errors():
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 4)), np.arange(20) % 2
    pool = rng.random((5, 4))
    data = tld.from_numpy(x, y, x_unlabeled=pool, val_fraction=0, test_fraction=0)
    got = np.stack(list(data.unlabeled.as_numpy_iterator()))
    np.testing.assert_allclose(got, pool.astype("float32"))
    assert data.num_examples("unlabeled") == 5
    with pytest.raises(ValueError, match=r"`x_unlabeled` examples have shape \(3,\); expected \(4,\)"):
        tld.from_numpy(x, y, x_unlabeled=rng.random((5, 3)))
    with pytest.raises(ValueError, match="`x_unlabeled` is empty"):
        tld.from_numpy(x, y, x_unlabeled=np.zeros((0, 4)))
    with pytest.raises(ValueError, match="no unlabelled pool"):
        tld.from_numpy(x, y).split("unlabeled")


def test_audit_reports_pool_copies_of_test_as_leakage(tmp_path):
    root = tld.make_image_folder(tmp_path / "lab", per_class=4, splits=("train", "test"))
    pool = _pool(tmp_path / "pool", n=2)
    test_file = sorted((tmp_path / "lab" / "test" / "circle").iterdir())[0]
    train_file = sorted((tmp_path / "lab" / "train" / "square").iterdir())[0]
    shutil.copy(test_file, pool / "copy_of_test.png")
    shutil.copy(train_file, pool / "copy_of_train.png")
    data = tld.from_image_folder(root, unlabeled=pool, val_fraction=0, check_cache=False)
    report = tld.audit(data)
    assert report.num_examples["unlabeled"] == 4
    assert "unlabeled" not in report.class_counts and not report.unknown_labels
    assert len(report.leaks) == 1
    leaked = {e["split"] for e in report.leaks[0]["items"]}
    assert leaked == {"unlabeled", "test"}
    # The copy of a training image is a duplicate, not leakage and not a label conflict.
    train_copy = [g for g in report.exact_duplicates if not g["cross_split"]]
    assert [{e["split"] for e in g["items"]} for g in train_copy] == [{"train", "unlabeled"}]
    assert not report.label_conflicts
    assert "unlabeled: 4 examples (no labels)" in report.to_text()
    with pytest.raises(tld.DataLeakageError):
        tld.check_no_leakage(report)


def test_recipe_data_unlabeled(tmp_path):
    root = tld.make_image_folder(tmp_path / "lab", per_class=3)
    pool = _pool(tmp_path / "pool", n=2)
    recipe = load_recipe({"backbone": {"name": "tiny"},
                          "data": {"source": "folder", "path": root, "unlabeled": str(pool)}})
    data = load_data(recipe.data, seed=0)
    assert data.num_examples("unlabeled") == 2
    np.save(tmp_path / "pool.npy", np.zeros((4, 3)))
    np.savez(tmp_path / "lab.npz", x=np.ones((10, 3)), y=np.arange(10) % 2)
    recipe = load_recipe({"backbone": {"name": "tiny"},
                          "data": {"source": "numpy", "path": str(tmp_path / "lab.npz"),
                                   "unlabeled": str(tmp_path / "pool.npy")}})
    assert load_data(recipe.data, seed=0).num_examples("unlabeled") == 4
    with pytest.raises(RecipeError, match="data.unlabeled: expected only with source folder"):
        load_recipe({"backbone": {"name": "tiny"},
                     "data": {"source": "digits", "unlabeled": str(pool)}})
