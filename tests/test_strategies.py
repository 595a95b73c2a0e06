"""Fine-tuning strategies that follow the evidence (#19): multiplicative layer decay."""

import numpy as np
import pytest

import tlkit
from tlkit import config as config_lib
from tlkit.optimizers import from_config, group_lr_multipliers
from tlkit.recipes import Recipe, RecipeError
from tlkit.testing import tiny_model


def _model():
    return tiny_model(compile=False, freeze_backbone=False)


def test_layer_decay_is_a_factor_per_group_down_from_the_head():
    model = _model()
    config = tlkit.FineTuneConfig(layer_decay=0.75)
    optimizer = from_config(config, 1e-3, model=model)
    expected = group_lr_multipliers(model, decay=1 / 0.75)
    groups = sorted(expected.values(), reverse=True)
    assert groups[0] == pytest.approx(1.0)
    assert groups[1] == pytest.approx(0.75)
    assert groups[2] == pytest.approx(0.75 ** 2)
    # The optimizer carries those multipliers (not the ULMFiT divisor's 1/2.6 per group).
    multipliers = tlkit.optimizers.variable_lr_multipliers(model, decay=1 / 0.75)
    assert type(optimizer).__name__.startswith("Layerwise")
    assert np.isclose(min(multipliers.values()), min(groups))


def test_layer_decay_and_the_ulmfit_divisor_are_alternatives():
    assert tlkit.FineTuneConfig(layerwise_decay=2.6).layer_decay is None
    with pytest.raises(config_lib.ConfigError, match="layer_decay.*not both"):
        tlkit.FineTuneConfig(layer_decay=0.75, layerwise_decay=2.6)


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2, "x"])
def test_bad_layer_decay_names_the_setting(bad):
    with pytest.raises(config_lib.ConfigError, match=r"layer_decay: expected a float in \(0, 1\]"):
        tlkit.FineTuneConfig(layer_decay=bad)


def test_layer_decay_from_a_recipe():
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "optimizer": {"layer_decay": 0.65}})
    assert recipe.fine_tune_config().layer_decay == 0.65
    with pytest.raises(RecipeError, match="layer_decay"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "optimizer": {"layer_decay": 2.6}})
