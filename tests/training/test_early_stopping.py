"""Early stopping over the two phases (#36): a head-only epoch's weights are not handed back
when fine-tuning epochs follow (`FineTuneConfig.restore_head_epoch`), and what was restored is
reported with the budget."""

import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit.config import FineTuneConfig
from tlkit.reports.model_card import budget_sentence
from tlkit.testing import tiny_model
from tlkit.training.early_stopping import DIVERGED, PhaseAwareEarlyStopping, count_examples


def _run(stopper, model, losses):
    """Epoch e ends with every weight set to e and `val_loss` = losses[e]; then the train end."""
    stopper.set_model(model)
    model.stop_training = False
    stopper.on_train_begin()
    for epoch, loss in enumerate(losses):
        stopper.on_epoch_begin(epoch)
        model.set_weights([np.full(w.shape, float(epoch), w.dtype) for w in model.get_weights()])
        stopper.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            break
    stopper.on_train_end()
    return float(model.get_weights()[0].flat[0])  # the epoch whose weights are in the model


def test_a_head_only_best_epoch_is_not_restored_when_fine_tuning_follows():
    # The head epoch's validation loss is the lowest, as on a 5-example split where fine-tuning
    # raises the loss for a while although accuracy climbs (#36).
    losses = [1.8, 2.3, 2.2, 2.1]
    model = tiny_model()
    assert FineTuneConfig().restore_head_epoch == "never"
    stopper = PhaseAwareEarlyStopping(1, monitor="val_loss", patience=3, restore_best_weights=True)
    assert _run(stopper, model, losses) == 3.0  # the best fine-tuning epoch, not epoch 0
    assert (stopper.best_epoch, stopper.forgot_head_epoch) == (3, 0)
    old = PhaseAwareEarlyStopping(1, restore_head_epoch="always", monitor="val_loss", patience=3,
                                  restore_best_weights=True)
    assert _run(old, model, losses) == 0.0  # tlkit before #36 handed back the head epoch
    # Patience still counts from the start of fine-tuning, and only never-improving epochs.
    stopper = PhaseAwareEarlyStopping(1, monitor="val_loss", patience=1, restore_best_weights=True)
    assert _run(stopper, model, [1.0, 2.0, 3.0, 1.5]) == 1.0
    assert stopper.stopped_epoch == 2 and model.stop_training
    # A fine-tuning phase that only diverged (NaN) falls back to the head phase's best.
    stopper = PhaseAwareEarlyStopping(1, monitor="val_loss", patience=3, restore_best_weights=True)
    assert _run(stopper, model, [1.0, float("nan"), float("nan"), float("inf")]) == 0.0
    assert stopper.forgot_head_epoch is None
    with pytest.raises(tlkit.config.ConfigError, match="restore_head_epoch"):
        FineTuneConfig(restore_head_epoch="sometimes")


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_fine_tune_reports_the_restored_epoch_with_the_budget():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    y = np.arange(12) % 3
    result = tlkit.fine_tune(tiny_model(), (x, y), (x[:3], y[:3]), strategy="full",
                             head_epochs=1, fine_epochs=2, verbose=0, restore_best_from=0)
    record = result.budget["early_stopping"]
    assert record["restore_head_epoch"] == "never"
    assert record["restored_epoch"] == result.best_epoch and result.best_epoch >= 1
    assert f"early stopping restored epoch {result.best_epoch + 1}" in budget_sentence(
        result.budget)


def test_a_tiny_validation_split_keeps_the_last_epoch_unless_it_diverged():
    # On a split below restore_best_from the lowest loss is noise: the last epoch stays, and
    # the stopper does not stop either.
    model = tiny_model()
    stopper = PhaseAwareEarlyStopping(1, keep_last=True, monitor="val_loss", patience=1,
                                      restore_best_weights=True)
    assert _run(stopper, model, [1.0, 2.0, 3.0, 2.5]) == 3.0
    assert (stopper.stopped_epoch, stopper.kept_last_epoch) == (0, 3)
    assert stopper.best_weights is None
    # A diverged last epoch is still replaced by the best finite one.
    stopper = PhaseAwareEarlyStopping(1, keep_last=True, monitor="val_loss", patience=3,
                                      restore_best_weights=True)
    assert _run(stopper, model, [1.0, 2.0, 1.5, float("nan")]) == 2.0
    assert stopper.kept_last_epoch is None
    # So is one beyond DIVERGED x the best (a blow-up, not noise); noise of +60% is kept.
    stopper = PhaseAwareEarlyStopping(1, keep_last=True, monitor="val_loss", patience=3,
                                      restore_best_weights=True)
    assert _run(stopper, model, [1.0, 2.0, 1.5, 1.5 * DIVERGED + 0.1]) == 2.0
    stopper = PhaseAwareEarlyStopping(1, keep_last=True, monitor="val_loss", patience=3,
                                      restore_best_weights=True)
    assert _run(stopper, model, [1.0, 2.0, 1.5, 2.4]) == 3.0


def test_fine_tune_counts_the_validation_split_before_choosing_an_epoch():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    y = np.arange(12) % 3
    assert count_examples((x[:5], y[:5]), 100) == 5
    assert count_examples(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), 6) == 6
    result = tlkit.fine_tune(tiny_model(), (x, y), (x[:3], y[:3]), strategy="full",
                             head_epochs=1, fine_epochs=2, verbose=0, restore_best_from=4)
    record = result.budget["early_stopping"]
    assert (record["kept_last_epoch"], record["val_examples"], record["restore_best_from"]) == (
        2, 3, 4)
    assert record["restored_epoch"] is None and result.best_epoch is None
    assert ("early stopping kept the last epoch, 3 (a validation split of 3 examples, under "
            "restore_best_from=4" in budget_sentence(result.budget))
    with pytest.raises(tlkit.config.ConfigError, match="restore_best_from"):
        FineTuneConfig(restore_best_from=-1)
