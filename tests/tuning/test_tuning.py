"""tlkit.tuning: search space as data, the fine-tuning HyperModel, searches, reports, resume."""

import csv
import os

import keras
import keras_tuner
import pytest
import tensorflow as tf
import yaml

from tlkit.recipes import Recipe, load_recipe
from tlkit.runner.tune import tune_recipe
from tlkit.testing.tuning_worker import build_tiny, tiny_data
from tlkit.tuning import FineTuneHyperModel, SearchChangedError, SearchSpace, tune
from tlkit.unfreeze import UnfreezeSchedule

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 2  # 32 training examples in batches of 16

SPACE = {
    "head_lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
    "lr": {"min": 1e-5, "max": 1e-3, "sampling": "log"},
    "layerwise_decay": {"values": [1.0, 2.6]},
    "unfreeze_groups": {"min": 1, "max": 2},
    "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
}


build = build_tiny  # one tiny builder for the tests and the worker script


@pytest.fixture(scope="module")
def data():
    x, y = tiny_data()
    train = tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[32:], y[32:])).batch(16)
    return train, val


# -- search space ----------------------------------------------------------------------------------
def test_space_from_yaml_becomes_hp_calls():
    # YAML 1.1 reads 1e-4 as a string; recipe keys and the recipe spellings (log, choice) work.
    config = yaml.safe_load("""
        optimizer.head_lr: {min: 1e-4, max: 1e-2, sampling: log}
        lr: {min: 1.0e-5, max: 1.0e-3, log: true}
        layerwise_decay: {choice: [1.0, 2.6]}
        phases.first: {min: 1, max: 4}
        head.dropout: {min: 0.0, max: 0.5, step: 0.1}
        bn_policy: [frozen, train_affine]
    """)
    space = SearchSpace.from_config(config)
    assert space.names == [
        "head_lr",
        "lr",
        "layerwise_decay",
        "unfreeze_groups",
        "dropout",
        "bn_policy",
    ]
    hp = keras_tuner.HyperParameters()
    values = space.declare(hp)
    by_name = {p.name: p for p in hp.space}
    assert type(by_name["head_lr"]).__name__ == "Float"
    assert (by_name["head_lr"].min_value, by_name["head_lr"].max_value) == (1e-4, 1e-2)
    assert by_name["lr"].sampling == "log"
    assert list(by_name["layerwise_decay"].values) == [1.0, 2.6]
    assert type(by_name["unfreeze_groups"]).__name__ == "Int"
    assert by_name["dropout"].step == 0.1
    assert values["bn_policy"] == "frozen"
    assert space.contains(values)


def test_space_fingerprint_ignores_order_and_names():
    a = SearchSpace.from_config(
        {"lr": {"min": 1e-5, "max": 1e-3, "log": True}, "dropout": [0.1, 0.2]}
    )
    b = SearchSpace.from_config(
        {
            "head.dropout": {"values": [0.1, 0.2]},
            "optimizer.lr": {"min": "1e-5", "max": "1e-3", "sampling": "log"},
        }
    )
    c = SearchSpace.from_config(
        {"lr": {"min": 1e-5, "max": 1e-2, "log": True}, "dropout": [0.1, 0.2]}
    )
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert c.diff(a) == [
        "changed lr: {'min': 1e-05, 'max': 0.001, 'sampling': 'log'} -> "
        "{'min': 1e-05, 'max': 0.01, 'sampling': 'log'}"
    ]


@pytest.mark.parametrize(
    "config, expected",
    [
        ({}, ["empty"]),
        (None, ["empty"]),
        ({"lr": {"min": 1e-2, "max": 1e-4}}, ["'lr'", "min <= max", "min=0.01"]),
        ({"learning_rate": {"min": 1e-4, "max": 1e-2}}, ["unknown parameter 'learning_rate'"]),
        ({"optimizer.lrr": {"min": 1e-4, "max": 1e-2}}, ["'optimizer.lrr'", "'optimizer.lr'"]),
        ({"lr": {"min": 1e-4, "max": 1e-2, "sampling": "exponential"}}, ["'lr'", "sampling"]),
        ({"lr": {"min": 1e-4, "max": 1e-2, "log": "yes"}}, ["'lr'", "log"]),
        ({"lr": {"min": 1e-4, "max": 1e-2, "log": True, "sampling": "linear"}}, ["'lr'"]),
        ({"head_lr": {"min": 0.0, "max": 1e-2}}, ["'head_lr'", "min"]),
        ({"dropout": {"min": 0.0, "max": 1.5}}, ["'dropout'", "max"]),
        ({"layerwise_decay": {"values": [0.5, 2.6]}}, ["'layerwise_decay'", "values"]),
        ({"unfreeze_groups": {"min": 1.5, "max": 3}}, ["'unfreeze_groups'", "integer"]),
        ({"bn_policy": {"values": ["frozen", "melted"]}}, ["'bn_policy'", "'melted'"]),
        ({"bn_policy": {"min": 0, "max": 1}}, ["'bn_policy'", "values"]),
        ({"lr": {"min": 1e-4}}, ["'lr'", "max"]),
        ({"lr": {"min": 1e-4, "max": 1e-2, "stepp": 2}}, ["'lr'", "'stepp'", "'step'"]),
        ({"dropout": {"values": []}}, ["'dropout'", "non-empty"]),
        ({"lr": {"min": 1e-4, "max": 1e-2}, "optimizer.lr": [1e-3]}, ["'lr'", "twice"]),
        ({"dropout": {"min": 0.0, "max": 0.5, "step": -0.1}}, ["'dropout'", "step"]),
    ],
)
def test_space_errors_name_the_parameter(config, expected):
    with pytest.raises(ValueError) as info:
        SearchSpace.from_config(config)
    for text in expected:
        assert text in str(info.value)


def test_hypermodel_checks_its_arguments(data):
    with pytest.raises(ValueError, match="model instance"):
        FineTuneHyperModel(build(0.1), SPACE, epochs=2)
    with pytest.raises(ValueError, match="'head_epochs'"):
        FineTuneHyperModel(build, {"head_epochs": {"min": 1, "max": 5}}, epochs=3)
    hypermodel = FineTuneHyperModel(build, {"lr": [1e-3]}, epochs=2)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    with pytest.raises(TypeError, match="validation_split"):
        hypermodel.fit(hp, model, data[0], validation_split=0.2)


# -- random search end to end ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_recipe():
    with open(os.path.join(REPO, "recipes", "smoke.yaml"), encoding="utf-8") as f:
        recipe = yaml.safe_load(f)
    recipe["tune"] = {"algorithm": "random", "max_trials": 3, "space": {}}
    return recipe


@pytest.fixture(scope="module")
def random_search(data, smoke_recipe, tmp_path_factory):
    keras.utils.set_random_seed(0)
    train, val = data
    return tune(
        build,
        train,
        val,
        SPACE,
        tuner="random",
        max_trials=3,
        max_epochs=2,
        directory=tmp_path_factory.mktemp("tuning"),
        project_name="random",
        recipe=smoke_recipe,
        load_best_model=True,
    )


@pytest.mark.slow
def test_random_search_runs_each_trial_in_the_space(random_search):
    result = random_search
    assert [r["trial_id"] for r in result.trials] == ["0", "1", "2"]
    assert result.trials_run == ["0", "1", "2"]
    assert {r["status"] for r in result.trials} == {"COMPLETED"}
    space = SearchSpace.from_config(SPACE)
    for row in result.trials:
        assert set(row["hyperparameters"]) == set(SPACE)
        assert space.contains(row["hyperparameters"])
        assert 0.0 <= row["score"] <= 1.0
    best = max(result.trials, key=lambda r: r["score"])
    assert result.best_score == pytest.approx(best["score"])
    assert result.best_hyperparameters == next(
        r["hyperparameters"] for r in result.trials if r["trial_id"] == result.best_trial_id
    )


@pytest.mark.slow
def test_trials_run_both_phases_with_the_tuned_unfreezing(random_search):
    for entry, row in zip(random_search.trial_log, random_search.trials):
        assert entry["epochs"] == [0, 1]
        groups = row["hyperparameters"]["unfreeze_groups"]
        assert entry["unfrozen_groups"] == [0, groups]  # head phase, then the top groups
        assert entry["resumed_from"] is None


@pytest.mark.slow
def test_best_model_is_compiled_with_the_best_weights(random_search, data):
    loss, accuracy = random_search.best_model.evaluate(data[1], verbose=0)
    assert accuracy == pytest.approx(random_search.best_score, abs=1e-6)


@pytest.mark.slow
def test_reports_are_written(random_search):
    paths = random_search.paths
    with open(paths["summary_csv"], encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    assert {"score", "status", *SPACE} <= set(rows[0])
    with open(paths["summary_md"], encoding="utf-8") as f:
        markdown = f.read()
    assert f"**{random_search.best_trial_id}** (best)" in markdown
    with open(paths["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(paths["plot"]) > 10_000


@pytest.mark.slow
def test_best_recipe_is_the_input_recipe_with_the_best_values(random_search, smoke_recipe):
    with open(random_search.paths["recipe"], encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("# Best of 3 trials")
    data = yaml.safe_load(text)
    recipe = Recipe.from_dict(data)
    best = random_search.best_hyperparameters
    assert recipe.optimizer.lr == pytest.approx(best["lr"])
    assert recipe.optimizer.head_lr == pytest.approx(best["head_lr"])
    assert recipe.optimizer.layerwise_decay == pytest.approx(best["layerwise_decay"])
    assert recipe.head.dropout == pytest.approx(best["dropout"])
    assert recipe.phases.first == best["unfreeze_groups"]
    assert (recipe.phases.head_epochs, recipe.phases.fine_epochs) == (1, 1)
    assert recipe.tune is None
    assert data["data"] == smoke_recipe["data"] and data["backbone"] == {"name": "tiny"}


@pytest.mark.slow
def test_bayesian_search_from_a_backbone_spec(image_savedmodel, data, tmp_path):
    train, val = data
    result = tune(image_savedmodel, train, val, {"lr": {"min": 1e-4, "max": 1e-2, "log": True}},
                  tuner="bayesian", max_trials=2, max_epochs=1, fixed={"head_epochs": 0},
                  model_kwargs={"num_classes": 3, "input_shape": (16, 16, 3)},
                  directory=tmp_path, project_name="bayes")
    assert [r["status"] for r in result.trials] == ["COMPLETED"] * 2
    with open(result.paths["recipe"], encoding="utf-8") as f:
        recipe = Recipe.from_dict(yaml.safe_load(f))
    assert recipe.backbone.path == os.path.abspath(image_savedmodel)
    assert recipe.optimizer.lr == pytest.approx(result.best_hyperparameters["lr"])
    assert (recipe.phases.head_epochs, recipe.phases.fine_epochs) == (0, 1)


# -- resume ----------------------------------------------------------------------------------------
class _Preempted(BaseException):
    """Stands for the process being killed (not an `Exception`: keras-tuner lets it through)."""


class _PreemptOnce(keras.callbacks.Callback):
    fired = []  # class-level: shared by keras-tuner's deep copies of the callback

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1 and not _PreemptOnce.fired:
            _PreemptOnce.fired.append(epoch)
            raise _Preempted()


@pytest.mark.slow
def test_interrupted_search_resumes_and_a_changed_space_fails(data, tmp_path):
    train, val = data
    space = {"lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"}}

    def search(max_trials, space=space, max_epochs=2, **kwargs):
        return tune(
            build,
            train,
            val,
            space,
            tuner="random",
            max_trials=max_trials,
            max_epochs=max_epochs,
            directory=tmp_path,
            project_name="resume",
            **kwargs,
        )

    with pytest.raises(_Preempted):  # killed in trial 0, after its first epoch
        search(2, callbacks=[_PreemptOnce()])
    resumed = search(2)
    assert resumed.trials_run == ["0", "1"]
    first = resumed.trial_log[0]
    assert (first["trial_id"], first["epochs"], first["resumed_from"]) == ("0", [1], "interrupted")
    assert first["first_step"] == STEPS  # the optimizer continued, so did the LR schedule
    assert [r["status"] for r in resumed.trials] == ["COMPLETED"] * 2

    more = search(3)  # a larger budget continues the same search
    assert more.trials_run == ["2"]
    assert [r["trial_id"] for r in more.trials] == ["0", "1", "2"]

    with pytest.raises(SearchChangedError, match="different search space") as info:
        search(4, space={"lr": {"min": 1e-5, "max": 1e-2, "sampling": "log"}})
    assert "changed lr" in str(info.value) and "overwrite=True" in str(info.value)
    with pytest.raises(SearchChangedError, match="max_epochs"):
        search(4, max_epochs=3)
    fresh = search(1, space={"dropout": [0.1, 0.3]}, overwrite=True)
    assert [r["trial_id"] for r in fresh.trials] == ["0"]


# -- Hyperband -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_hyperband_rounds_continue_the_phase_schedule(data, tmp_path):
    train, val = data
    result = tune(
        build,
        train,
        val,
        {
            "lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
            "unfreeze_groups": {"min": 1, "max": 2},
        },
        tuner="hyperband",
        max_trials=4,
        max_epochs=3,
        factor=3,
        directory=tmp_path,
        project_name="hyperband",
    )
    assert len(result.trials) == 4
    continued = [r for r in result.trials if r["continues"] is not None]
    assert continued, result.trials
    row = continued[0]
    assert (row["initial_epoch"], row["epochs"]) == (1, 3)
    parent = next(r for r in result.trials if r["trial_id"] == row["continues"])
    assert parent["hyperparameters"] == row["hyperparameters"] and parent["epochs"] == 1
    entry = next(e for e in result.trial_log if e["trial_id"] == row["trial_id"])
    assert entry["resumed_from"] == "previous_round"
    assert entry["epochs"] == [1, 2]  # epoch 0 (the head phase) is not redone
    assert entry["first_step"] == STEPS
    schedule = UnfreezeSchedule.gradual(
        head_epochs=1, first=row["hyperparameters"]["unfreeze_groups"], every=1, per_step=1
    )
    assert entry["unfrozen_groups"] == [schedule.num_unfrozen(e, 2) for e in (1, 2)]
    assert all(r["status"] == "COMPLETED" for r in result.trials)


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_round_without_a_backup_continues_from_the_loaded_weights(data):
    train, val = data
    hypermodel = FineTuneHyperModel(build, {"lr": [1e-3]}, epochs=3)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    hp.values.update({"tuner/epochs": 3, "tuner/initial_epoch": 1})
    history = hypermodel.fit(hp, hypermodel.build(hp), train, validation_data=val)
    assert history.epoch == [1, 2]
    entry = hypermodel.trial_log[-1]
    assert (entry["resumed_from"], entry["first_step"]) == ("weights", STEPS)
    assert entry["unfrozen_groups"] == [1, 2]


# -- recipes (what `tlkit tune RECIPE` runs) -------------------------------------------------------
@pytest.mark.slow
def test_tune_recipe_writes_a_ready_to_run_recipe(smoke_recipe, tmp_path):
    raw = dict(smoke_recipe)
    raw["tune"] = {
        "algorithm": "random",
        "max_trials": 2,
        "objective": "val_accuracy",
        "space": {
            "optimizer.lr": {"min": "1e-4", "max": "1e-2", "log": True},
            "head.dropout": {"choice": [0.0, 0.2]},
        },
    }
    recipe = load_recipe(
        raw, overrides=["phases.head_epochs=1", "phases.fine_epochs=1", "data.per_class.train=10"]
    )
    result = tune_recipe(recipe, output=str(tmp_path))
    assert len(result.trials) == 2
    assert result.project_dir == os.path.join(str(tmp_path), "tune")
    best = load_recipe(result.paths["recipe"])
    assert best.optimizer.lr == pytest.approx(result.best_hyperparameters["lr"])
    assert best.head.dropout == result.best_hyperparameters["dropout"]
    assert best.optimizer.head_lr == recipe.optimizer.head_lr  # not searched: kept
    assert best.data == recipe.data and best.backbone == recipe.backbone
    assert best.tune is None


def test_tune_recipe_needs_a_tune_section(smoke_recipe):
    raw = {k: v for k, v in smoke_recipe.items() if k != "tune"}
    with pytest.raises(ValueError, match="no `tune` section"):
        tune_recipe(load_recipe(raw))


@pytest.mark.slow
def test_trials_get_the_recipes_settings_that_are_not_searched(smoke_recipe, tmp_path,
                                                              monkeypatch):
    # ema_momentum, class_weight, swa_epochs, wise_ft_alphas are not tunable parameters; each
    # trial's fine_tune must still see the recipe's values (and the tunable ones it fixes).
    from tlkit.training import fine_tuning

    seen = []
    real = fine_tuning.fine_tune

    def recording(model, train, validation=None, config=None, **kwargs):
        seen.append(config)
        return real(model, train, validation, config, **kwargs)

    monkeypatch.setattr(fine_tuning, "fine_tune", recording)
    raw = dict(smoke_recipe, tune={"algorithm": "random", "max_trials": 1,
                                   "space": {"head.dropout": {"choice": [0.0, 0.2]}}})
    recipe = load_recipe(raw, overrides=[
        "phases.head_epochs=1", "phases.fine_epochs=2", "data.per_class.train=10",
        "optimizer.ema_momentum=0.9", "regularization.class_weight=balanced",
        "phases.swa_epochs=1", "phases.wise_ft_alphas=[0.5, 1.0]", "phases.strategy=lp_ft",
        "optimizer.label_smoothing=0.1", "optimizer.layer_decay=0.75"])
    tune_recipe(recipe, output=str(tmp_path))
    assert len(seen) == 1
    config = seen[0]
    assert (config.ema_momentum, config.class_weight, config.swa_epochs) == (0.9, "balanced", 1)
    assert config.wise_ft_alphas == [0.5, 1.0]
    assert (config.strategy, config.label_smoothing, config.layer_decay) == ("lp_ft", 0.1, 0.75)
    assert (config.head_epochs, config.fine_epochs) == (1, 2)


def test_trials_run_auto_as_gradual_and_other_strategies_as_given(data):
    hypermodel = FineTuneHyperModel(build, {"lr": [1e-3]}, epochs=3)
    values = dict(hypermodel.fixed, lr=1e-3)
    assert values["strategy"] == "auto"
    assert hypermodel.config(values, 1, 3).strategy == "gradual"
    assert hypermodel.config(dict(values, strategy="full"), 1, 3).strategy == "full"
    searched = FineTuneHyperModel(build, {"unfreeze_groups": [1, 2]}, epochs=3,
                                  base_config={"unfreeze": "table", "table": {0: 1}})
    assert searched.config(dict(searched.fixed, unfreeze_groups=1), 1, 3).unfreeze == "gradual"



def test_layer_decay_off_is_null_in_the_config_and_1_in_the_search(data):
    """keras-tuner holds no null: the search holds 1.0 for "one LR for all groups", the trial's
    config gets null back; other values arrive as floats."""
    hypermodel = FineTuneHyperModel(build, {"lr": [1e-3]}, epochs=3,
                                    fixed={"layerwise_decay": None, "layer_decay": None})
    assert (hypermodel.fixed["layerwise_decay"], hypermodel.fixed["layer_decay"]) == (1.0, 1.0)
    values = dict(hypermodel.fixed, lr=1e-3)
    config = hypermodel.config(values, 1, 3)
    assert (config.layerwise_decay, config.layer_decay) == (None, None)
    assert hypermodel.config(dict(values, layerwise_decay=2), 1, 3).layerwise_decay == 2.0
    assert hypermodel.config(dict(values, layer_decay=0.5), 1, 3).layer_decay == 0.5


@pytest.mark.parametrize("content", ["[]", '{"space": '])
def test_a_damaged_search_record_is_one_line_naming_it(tmp_path, content):
    """#30: a damaged `search.json` names the file and the fix, not a JSON traceback."""
    from tlkit._io import RecordError
    from tlkit.tuning import search

    (tmp_path / search.SEARCH_FILE).write_text(content)
    with pytest.raises(RecordError, match=rf"{search.SEARCH_FILE}: damaged record: .*; start "
                       r"the search afresh with overwrite=True"):
        search._check_resume(str(tmp_path), {"space_fingerprint": "x"}, overwrite=False)


def test_overwrite_replaces_only_a_search(tmp_path):
    """#30: `overwrite=True` on a folder of other files is refused; nothing is deleted."""
    from tlkit.tuning import search

    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(SearchChangedError, match=r"holds files that are not a search"):
        search._check_resume(str(tmp_path), {"space_fingerprint": "x"}, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "keep"
