"""Training refuses leaked splits unless told otherwise; the `compare` section is validated."""

import shutil

import pytest

import tlkit
from tlkit.data import DataLeakageError
from tlkit.recipes import Recipe, RecipeError
from tlkit.train import train_recipe


def _folder_recipe(path, allow):
    return Recipe.from_dict({
        "name": "leaky",
        "backbone": {"name": "tiny"},
        "data": {"source": "folder", "path": str(path), "batch_size": 4, "allow_leakage": allow,
                 "splits": {"train": "train", "val": "val"}},
        "phases": {"head_epochs": 1, "fine_epochs": 0},
        "output": {"export": ["keras"], "tensorboard": False},
    })


def test_leaked_split_is_refused_unless_allowed(tmp_path):
    root = tmp_path / "images"
    tlkit.data.make_image_folder(root, per_class=4, splits=("train", "val"))
    leaked = next((root / "train" / "circle").iterdir())
    shutil.copy(leaked, root / "val" / "circle" / "copy_of_train.png")
    with pytest.raises(DataLeakageError, match="copy_of_train"):
        train_recipe(_folder_recipe(root, allow=False), output=str(tmp_path / "run1"), verbose=0)
    assert (tmp_path / "run1" / "reports" / "data_audit.txt").exists()  # the audit is kept
    run = train_recipe(_folder_recipe(root, allow=True), output=str(tmp_path / "run2"), verbose=0)
    assert (tmp_path / "run2" / "model.keras").exists() and run.endswith("run2")


def test_compare_section_is_validated():
    with pytest.raises(RecipeError, match=r"compare.scratch_epochs: expected an int >= 0"):
        Recipe.from_dict({"compare": {"scratch_epochs": -1}})
    with pytest.raises(RecipeError, match="unknown key 'scratch_epoch'"):
        Recipe.from_dict({"compare": {"scratch_epoch": 3}})
    assert Recipe.from_dict({"compare": {"scratch_epochs": 2}}).compare.scratch_epochs == 2


def test_scratch_baseline_skips_savedmodel_backbones(tmp_path):
    from tlkit.runs import RunDir
    from tlkit.train import scratch_baseline

    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "compare": {"scratch_epochs": 1}})
    result = scratch_baseline(recipe, RunDir(str(tmp_path)), data=None, verbose=0)
    assert "cannot be rebuilt without its weights" in result["skipped"]
    assert RunDir(str(tmp_path)).read_json("scratch_baseline.json")["skipped"] == result["skipped"]
