"""Training refuses leaked splits unless told otherwise; the `compare` section is validated."""

import shutil

import pytest

import tlkit
from tlkit.data import DataLeakageError
from tlkit.recipes import Recipe, RecipeError
from tlkit.runner.train import train_recipe


def _folder_recipe(path, allow):
    return Recipe.from_dict({
        "name": "leaky",
        "backbone": {"name": "tiny"},
        "data": {"source": "folder", "path": str(path), "batch_size": 4, "allow_leakage": allow,
                 "splits": {"train": "train", "val": "val"}},
        "phases": {"head_epochs": 1, "fine_epochs": 0},
        "output": {"export": ["keras"], "tensorboard": False},
    })


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
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
    from tlkit.runner.rundir import RunDir
    from tlkit.runner.scratch import scratch_baseline

    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "compare": {"scratch_epochs": 1}})
    result = scratch_baseline(recipe, RunDir(str(tmp_path)), data=None, verbose=0)
    assert "cannot be rebuilt without its weights" in result["skipped"]
    assert RunDir(str(tmp_path)).read_json("scratch_baseline.json")["skipped"] == result["skipped"]


@pytest.mark.slow
def test_scratch_baseline_trains_without_keras_warnings(tmp_path):
    """The baseline's `fit` on a shuffled tf.data pipeline passes no `shuffle=True` (Keras
    warns that it ignores it). The subject is the `fit` call, not the backbone: VGG16 (a
    Keras application rebuilt without weights, 19 layers) at 32 px, not EfficientNet-Lite0,
    whose from-scratch build and trace made this the slow tier's 5th slowest test (#31:
    pytest on this test alone 58 -> 23 CPU-s, ~18 of them start-up)."""
    import warnings

    from tlkit.runner.data import load_data
    from tlkit.runner.rundir import RunDir
    from tlkit.runner.scratch import scratch_baseline

    root = tmp_path / "images"
    tlkit.data.make_image_folder(root, per_class=4, splits=("train", "test"))
    recipe = Recipe.from_dict({
        "backbone": {"name": "VGG16", "options": {"input_shape": [32, 32, 3]}},
        "data": {"source": "folder", "path": str(root), "batch_size": 4,
                 "splits": {"train": "train", "test": "test"}},
        "compare": {"scratch_epochs": 1},
    })
    data = load_data(recipe.data, recipe.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = scratch_baseline(recipe, RunDir(str(tmp_path / "run")), data, verbose=0)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "shuffle" in m], messages
    assert result["epochs"] == 1 and result["split"] == "test" and 0 <= result["accuracy"] <= 1


def test_segments_name_the_bn_policy_only_for_backbones_with_batchnorm():
    from tlkit import trainability
    from tlkit.runner.train import plan_segments
    from tlkit.testing import tiny_model, tiny_transformer

    assert trainability.has_batch_norm(tiny_model())
    transformer = tiny_transformer()  # LayerNorm only, as MiniLM
    assert not trainability.has_batch_norm(transformer)
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"},
                               "phases": {"head_epochs": 1, "fine_epochs": 2, "first": 1}})
    labels = [s["label"] for s in plan_segments(recipe, 2, batch_norm=False)]
    assert labels[1:] and not [label for label in labels if "BN" in label], labels
    assert all("BN frozen" in s["label"] for s in plan_segments(recipe, 2)[1:])


class _FakeStrategy:
    num_replicas_in_sync = 4


def test_batch_is_per_replica_and_lr_scales_on_request():
    from tlkit.runner.settings import _per_replica

    recipe = Recipe.from_dict({"data": {"batch_size": 16},
                               "optimizer": {"lr": 1.0e-4, "head_lr": 1.0e-3},
                               "distribute": {"scale_lr": True}})
    scaled = _per_replica(recipe, _FakeStrategy())
    assert scaled.data.batch_size == 64
    assert scaled.optimizer.lr == pytest.approx(4e-4) and scaled.optimizer.head_lr == pytest.approx(4e-3)
    unscaled = _per_replica(Recipe.from_dict({"data": {"batch_size": 16}}), _FakeStrategy())
    assert unscaled.data.batch_size == 64 and unscaled.optimizer.lr == Recipe().optimizer.lr


def test_distribute_strategy_values_are_checked():
    assert Recipe.from_dict({"distribute": {"strategy": "tpu:local"}}).distribute.strategy == "tpu:local"
    with pytest.raises(RecipeError, match=r"distribute.strategy: expected one of .*'tpu:<name>'"):
        Recipe.from_dict({"distribute": {"strategy": "quantum"}})


@pytest.mark.slow
def test_smoke_recipe_under_mirrored_strategy(tmp_path):
    recipe = Recipe.from_dict({
        "name": "mirrored_smoke", "backbone": {"name": "tiny"},
        "data": {"source": "digits", "per_class": {"train": 10}, "batch_size": 16},
        "phases": {"head_epochs": 1, "fine_epochs": 1, "schedule": "all"},
        "distribute": {"strategy": "mirrored"},
        "output": {"export": ["keras"], "tensorboard": False},
    })
    run = train_recipe(recipe, output=str(tmp_path / "run"), verbose=0)
    import json

    metrics = json.load(open(f"{run}/metrics.json"))
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_tpu_runs_get_static_training_batches(monkeypatch):
    import tensorflow as tf

    import tlkit.data
    from tlkit import distribute
    from tlkit.runner.settings import _per_replica

    class _TPU:
        num_replicas_in_sync = 1

    monkeypatch.setattr(distribute, "is_tpu", lambda s: isinstance(s, _TPU))
    recipe = Recipe.from_dict({"data": {"batch_size": 8}})
    assert recipe.data.drop_remainder is None
    assert _per_replica(recipe, _TPU()).data.drop_remainder is True
    assert _per_replica(recipe, _FakeStrategy()).data.drop_remainder is None  # not a TPU
    pinned = Recipe.from_dict({"data": {"drop_remainder": False}})
    assert _per_replica(pinned, _TPU()).data.drop_remainder is False
    ds = tlkit.data.batch(tf.data.Dataset.range(20).map(lambda i: (i, i)), 8, True, 0, True)
    distribute.check_static_batches(ds)  # would raise on a dynamic batch dimension
    assert [int(x.shape[0]) for x, _ in ds] == [8, 8]
