"""WiSE-FT as a fine-tuning setting (#19): `wise_ft_alphas` inside `fine_tune`."""

import keras
import numpy as np
import pytest

import tlkit
from tlkit import config as config_lib
from tlkit.recipes import Recipe, RecipeError
from tlkit.testing import tiny_image_data, tiny_model


class _Record(keras.callbacks.Callback):
    """The weights at the start of epoch `epoch` and at the end of `fit`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.start, self.end = epoch, None, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.start = self.model.get_weights()

    def on_train_end(self, logs=None):
        self.end = self.model.get_weights()


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize("head_epochs", [0, 1])
def test_final_weights_interpolate_the_start_and_end_of_fine_tuning(head_epochs):
    x, y = tiny_image_data()
    model = tiny_model(num_classes=2, compile=False)
    record = _Record(head_epochs)
    alphas = (0.25, 0.5)
    result = tlkit.fine_tune(model, (x, y), (x, y), head_epochs=head_epochs, fine_epochs=2,
                             lr=1e-2, unfreeze="all", patience=None, wise_ft_alphas=alphas,
                             callbacks=[record], batch_size=8, verbose=0)
    alpha = result.wise_ft["alpha"]
    assert alpha in alphas and set(result.wise_ft["scores"]) == set(alphas)
    assert result.config.wise_ft_alphas == list(alphas)
    moved = 0
    for final, start, end in zip(model.get_weights(), record.start, record.end):
        np.testing.assert_allclose(final, (1 - alpha) * start + alpha * end, rtol=1e-5,
                                   atol=1e-6)
        moved += not np.allclose(start, end)
    assert moved  # fine-tuning changed weights, so the interpolation is not trivial


def test_wise_ft_needs_a_fine_phase_and_validation():
    with pytest.raises(config_lib.ConfigError,
                       match=r"wise_ft_alphas: .*fine_epochs is 0 \(nothing to interpolate\)"):
        tlkit.FineTuneConfig(fine_epochs=0, wise_ft_alphas=[0.5, 1.0])
    with pytest.raises(RecipeError, match=r"phases.wise_ft_alphas: .*fine_epochs is 0"):
        Recipe.from_dict({"backbone": {"name": "tiny"},
                          "phases": {"fine_epochs": 0, "wise_ft_alphas": [0.5]}})
    with pytest.raises(config_lib.ConfigError, match=r"wise_ft_alphas: expected a non-empty"):
        tlkit.FineTuneConfig(wise_ft_alphas=[0.5, 1.5])
    x, y = tiny_image_data()
    with pytest.raises(config_lib.ConfigError, match="wise_ft_alphas: WiSE-FT chooses alpha on "
                                                     "validation data"):
        tlkit.fine_tune(tiny_model(num_classes=2, compile=False), (x, y), fine_epochs=1,
                        wise_ft_alphas=[0.5], verbose=0)


@pytest.mark.slow
def test_recipe_run_records_the_chosen_alpha_with_the_regularization_settings(tmp_path):
    import json
    import os

    from tlkit.recipes import load_recipe
    from tlkit.runner.train import train_recipe

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    recipe = load_recipe(os.path.join(root, "recipes", "smoke.yaml"), [
        "phases.head_epochs=2", "phases.fine_epochs=1", "phases.wise_ft_alphas=[0.5, 1.0]",
        "regularization.mixup=0.2", "regularization.class_weight=balanced",
        "regularization.loss=focal", "output.tensorboard=false"])
    out = train_recipe(recipe, output=str(tmp_path / "run"), verbose=0)
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["wise_ft"]["alpha"] in (0.5, 1.0)
    assert set(metrics["wise_ft"]["scores"]) == {"0.5", "1"}
    with open(os.path.join(out, "reports", "model_card.md")) as f:
        card = f.read()
    assert f"WiSE-FT: final weights = (1 - alpha) x start of fine-tuning + alpha x end, alpha " \
           f"**{metrics['wise_ft']['alpha']:g}**" in card
    # The saved model takes integer labels again (trained on one-hot, mixed batches).
    model = keras.models.load_model(os.path.join(out, "model.keras"), compile=True)
    assert type(model.loss).__name__ == "SparseCategoricalFocalCrossentropy"
