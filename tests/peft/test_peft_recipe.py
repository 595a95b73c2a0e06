"""The recipe's `peft:` section: LoRA applied by the runner, validated like every recipe key."""

import keras
import pytest

import tlkit
from tlkit import cli
from tlkit.recipes import RecipeError, load_recipe

SMOKE = "recipes/smoke.yaml"
# MobileNet (v1: 13 pointwise convs, 28 conv layers) rather than MobileNetV2 (52): the subject is
# the recipe's `peft:` section, and each trace of the model is what this test spends (#31: pytest
# on this test alone 55 -> 32 CPU-s).
LORA = [
    "--set", "backbone.name=MobileNet",
    "--set", "backbone.options={weights: null, input_shape: [32, 32, 3]}",
    "--set", "data.image_size=32", "--set", "data.cache_features=false",
    "--set", "phases.head_epochs=1", "--set", "phases.fine_epochs=1",
    "--set", "peft={rank: 4, targets: [pointwise_conv]}",
]


@pytest.mark.slow
def test_peft_recipe_trains_adapters_that_survive_the_saved_model(tmp_path):
    out = str(tmp_path / "run")
    assert cli.main(["train", SMOKE, "--output", out, *LORA]) == 0
    model = tlkit.load(f"{out}/model.keras")
    lora = [layer for layer in model._flatten_layers() if getattr(layer, "lora_enabled", False)]
    assert lora and all(layer.lora_rank == 4 for layer in lora)
    assert all(isinstance(layer, keras.layers.Conv2D) for layer in lora)


@pytest.mark.parametrize(
    "override, message",
    [
        ("peft={rank: 0}", "peft: Expected a LoRA `rank` that is an integer > 0"),
        ("peft={method: qlora}", "peft.method: expected one of 'lora'"),
        ("peft={quantize: int4}", "peft.quantize"),
        ("peft={ranks: 4}", "unknown key 'ranks'"),
    ],
)
def test_bad_peft_sections_are_recipe_errors(override, message):
    with pytest.raises(RecipeError, match=None) as err:
        load_recipe(SMOKE, overrides=[override])
    assert message in str(err.value)
