"""`FineTuneConfig.strategy` (#19): which weights each strategy trains, `auto`'s choice, errors."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit import config as config_lib
from tlkit.recipes import Recipe, RecipeError
from tlkit.testing import TestCase, tiny_model
from tlkit.training import strategies
from tlkit.training.strategies import auto
from tlkit.training.strategies.base import StrategyChoice
from tlkit.unfreeze.schedule import SurgicalUnfreeze, UnfreezeSchedule

GROUPS = ("block1", "block2", "block3")


def _data(n=36, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32")
    mean = x.mean(axis=(1, 2, 3))
    y = (np.argsort(np.argsort(mean)) * 3 // n).astype("int32")  # 3 balanced classes
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(6)


def _run(**settings):
    keras.utils.set_random_seed(0)
    model = tiny_model(compile=False)
    before = {v.path: v.numpy().copy() for v in model.weights}
    data = _data()
    settings = {"head_epochs": 1, "fine_epochs": 2, "patience": None, "lr": 1e-2, **settings}
    result = tlkit.fine_tune(model, data, data, verbose=0, **settings)
    changed = {p.split("/")[0] for p, v in before.items()
               if not np.array_equal(v, next(w for w in model.weights if w.path == p).numpy())}
    return result, changed, model


def _blocks(changed):
    return {c.removesuffix("_conv") for c in changed if c != "head"}


SETTINGS = {"head_epochs": 1, "fine_epochs": 2, "patience": None, "lr": 1e-2}


class TestStrategies(TestCase):
    """Each strategy through `TestCase.run_strategy_test`: the record of what ran, checked
    against the groups whose weights changed (every other group bit-identical)."""

    def _model(self):
        keras.utils.set_random_seed(0)
        return tiny_model(compile=False)

    @pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
    @pytest.mark.parametrize("strategy, unfrozen", [
        ("gradual", [0, 2, 3]), ("full", [0, 3, 3]), ("lp_ft", [3, 3]),
    ])
    def test_strategies_that_unfreeze_everything_train_every_group(self, strategy, unfrozen):
        data = _data()
        result, _ = self.run_strategy_test(self._model(), data, data, strategy=strategy,
                                           expected_trained={*GROUPS, "head"},
                                           expected_unfrozen=unfrozen, **SETTINGS)
        if strategy == "lp_ft":
            # The converged probe replaces the head phase: no head epochs, all groups from epoch 1.
            assert result.head_epochs == 0 and len(result.history.epoch) == 2
            assert result.strategy["probe"]["C"] > 0

    def test_linear_probe_changes_only_the_head_and_runs_no_fit(self):
        model, data = self._model(), _data()
        result, _ = self.run_strategy_test(model, data, data, strategy="linear_probe",
                                           expected_trained={"head"}, **SETTINGS)
        assert result.history.epoch == [] and result.fine_epochs == 0
        assert result.strategy["examples_per_class"] == 12
        # The head holds the probe's solution: the model scores what the probe reported.
        accuracy = model.evaluate(_data(), verbose=0, return_dict=True)["accuracy"]
        assert accuracy == pytest.approx(result.strategy["probe"]["train_accuracy"], abs=1e-6)

    @pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
    @pytest.mark.parametrize("group, trained", [(0, "block1"), (-1, "block3"),
                                                ("block2", "block2")])
    def test_surgical_trains_exactly_one_group(self, group, trained):
        data = _data()
        result, _ = self.run_strategy_test(self._model(), data, data, strategy="surgical",
                                           surgical_group=group, expected_trained={trained, "head"},
                                           expected_unfrozen=[0, 1, 1], **SETTINGS)
        assert result.strategy["surgical_group"] == trained

    @pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
    def test_auto_restores_the_probe_when_fine_tuning_is_worse_on_validation(self):
        # An absurd LR wrecks fine-tuning; auto must hand back the probe's weights.
        model, data = self._model(), _data()
        result, _ = self.run_strategy_test(
            model, data, data, strategy="auto", expected_strategy="linear_probe",
            expected_trained={"head"}, **{**SETTINGS, "lr": 1e3, "optimizer": "sgd"})
        assert "probe's weights were kept" in result.strategy["reason"]
        assert "(36 validation examples)" in result.strategy["reason"]
        accuracy = model.evaluate(_data(), verbose=0, return_dict=True)["accuracy"]
        assert accuracy == pytest.approx(result.strategy["probe"]["val_accuracy"], abs=1e-6)


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_surgical_auto_chooses_one_group_on_validation(caplog):
    with caplog.at_level(logging.INFO, logger="tlkit.training"):
        result, changed, _ = _run(strategy="surgical", surgical_group="auto")
    chosen = result.strategy["surgical_group"]
    assert chosen in GROUPS and _blocks(changed) == {chosen}
    assert "lowest validation loss" in result.strategy["reason"]
    assert any("strategy surgical" in r.getMessage() for r in caplog.records)


def test_auto_keeps_the_probe_below_the_label_budget(monkeypatch, caplog):
    monkeypatch.setattr(auto, "PROBE_BELOW", 13)  # this data has 12 per class
    with caplog.at_level(logging.INFO, logger="tlkit.training"):
        result, changed, _ = _run(strategy="auto")
    assert result.strategy["strategy"] == "linear_probe"
    assert result.strategy["requested"] == "auto"
    assert "12 labelled example(s) per class < 13" in result.strategy["reason"]
    assert changed == {"head"}
    lines = [r.getMessage() for r in caplog.records if "strategy linear_probe (from auto)" in
             r.getMessage()]
    assert len(lines) == 1


def test_auto_fine_tunes_from_the_probe_above_the_budget():
    result, changed, _ = _run(strategy="auto", lr=1e-4)
    assert result.strategy["requested"] == "auto"
    assert result.strategy["strategy"] in ("lp_ft", "linear_probe")
    assert "LP-FT" in result.strategy["reason"]
    if result.strategy["strategy"] == "lp_ft":
        assert _blocks(changed) == set(GROUPS)


@pytest.mark.parametrize("probe, tuned, count, kept", [
    (0.60, 0.50, 10, False),   # 10 validation images: 0.1 below is inside the noise (0.31)
    (0.60, 0.50, 1000, True),  # 1,000: 0.1 below is far outside it (0.031)
    (0.60, 0.59, 1000, False),
    (1.00, 0.25, 4, True),     # a perfect probe: the noise floor is 1/count, not zero
    (1.00, 0.50, 4, False),
])
def test_auto_keeps_the_probe_only_beyond_validation_noise(monkeypatch, probe, tuned, count,
                                                           kept):
    choice = StrategyChoice(name="lp_ft", requested="auto", reason="r",
                                       probe={"val_accuracy": probe, "val_examples": count},
                                       probe_weights=["probe"])

    class Model:
        restored = None

        def evaluate(self, *args, **kwargs):
            return {"accuracy": tuned}

        def set_weights(self, weights):
            self.restored = weights

    model = Model()
    monkeypatch.setattr(auto.probe, "as_dataset", lambda data: data)
    strategies.finish(model, choice, validation=object())
    assert choice.probe_kept is kept
    assert choice.to_record().get("probe_kept", False) is kept
    assert (model.restored == ["probe"]) is kept
    assert choice.name == ("linear_probe" if kept else "lp_ft")


@pytest.mark.parametrize("bad", ["bogus", "LP-FT", 3])
def test_unknown_strategy_names_the_setting_and_the_choices(bad):
    with pytest.raises(config_lib.ConfigError, match=r"strategy: expected one of 'gradual', "
                       r"'full', 'lp_ft', 'linear_probe', 'surgical', 'auto'"):
        tlkit.FineTuneConfig(strategy=bad)
    with pytest.raises(config_lib.ConfigError, match="strategy"):
        tlkit.fine_tune(tiny_model(compile=False), _data(), strategy=bad)


def test_strategy_in_recipes():
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"},
                               "phases": {"strategy": "surgical", "surgical_group": "block2"}})
    config = recipe.fine_tune_config()
    assert (config.strategy, config.surgical_group) == ("surgical", "block2")
    assert Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {
        "strategy": "surgical", "surgical_group": -1}}).fine_tune_config().surgical_group == -1
    with pytest.raises(RecipeError, match=r"phases\.strategy.*'lp_ft'.*'auto'"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"strategy": "lpft"}})
    with pytest.raises(RecipeError, match=r"phases\.surgical_group: required"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"strategy": "surgical"}})


def test_surgical_errors_name_the_setting():
    with pytest.raises(config_lib.ConfigError, match="surgical_group: required"):
        tlkit.FineTuneConfig(strategy="surgical")
    with pytest.raises(config_lib.ConfigError, match="surgical_group: index 7 is out of range"):
        tlkit.fine_tune(tiny_model(compile=False), _data(), strategy="surgical", surgical_group=7)
    with pytest.raises(config_lib.ConfigError, match="surgical_group: expected a group index"):
        tlkit.fine_tune(tiny_model(compile=False), _data(), strategy="surgical",
                        surgical_group="block9")
    with pytest.raises(config_lib.ConfigError, match="'auto' chooses the group on validation"):
        tlkit.fine_tune(tiny_model(compile=False), _data(), strategy="surgical",
                        surgical_group="auto")


def test_probe_strategies_refuse_an_endless_dataset():
    with pytest.raises(config_lib.ConfigError, match="finite dataset"):
        tlkit.fine_tune(tiny_model(compile=False), _data().repeat(), strategy="lp_ft",
                        steps_per_epoch=2)


def test_surgical_schedule_serializes_and_names_its_group():
    schedule = UnfreezeSchedule.surgical("block2", head_epochs=2)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(again, SurgicalUnfreeze) and again == schedule
    names = ["block1", "block2", "block3", "head"]
    assert schedule.trainable_groups(1, names) == ["head"]
    assert schedule.trainable_groups(2, names) == ["block2", "head"]
    with pytest.raises(ValueError, match="no layer group 'nope'"):
        UnfreezeSchedule.surgical("nope").trainable_groups(1, names)


def test_the_tuner_can_search_the_strategy():
    from tlkit.tuning.space import DEFAULTS, SearchSpace

    assert DEFAULTS["strategy"] == config_lib.DEFAULTS["strategy"]
    space = SearchSpace.from_config({"phases.strategy": {"choice": ["lp_ft", "full"]}})
    assert "strategy" in space
    with pytest.raises(ValueError, match="parameter 'strategy': expected values one of"):
        SearchSpace.from_config({"strategy": {"choice": ["lpft"]}})


def test_linear_probe_with_mixup_evaluates_on_integer_labels():
    # MixUp switches the training loss to one-hot labels; with no fit, the probe's model must
    # still be compiled for the integer labels it is evaluated on.
    result, changed, model = _run(strategy="linear_probe", mixup=0.2)
    assert changed == {"head"}
    accuracy = model.evaluate(_data(), verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(result.strategy["probe"]["train_accuracy"], abs=1e-6)
