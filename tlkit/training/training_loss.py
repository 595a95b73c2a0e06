"""The loss `fine_tune` compiles with, from a `FineTuneConfig`.

Label smoothing (the losses' own argument), focal loss (`loss_type: focal`), and the switch that
MixUp / CutMix need: they mix labels, so integer labels become one-hot and the sparse
cross-entropy becomes Keras's categorical one, but only when tlkit chose the loss. A sparse loss
the user passed is kept, and mixing is then an error naming the setting.
"""

from __future__ import annotations

import dataclasses

import keras

from tlkit.config import ConfigError
from tlkit.training.focal_loss import SparseCategoricalFocalCrossentropy, focal_loss
from tlkit.training.label_smoothing import SparseLabelSmoothingCrossentropy, with_label_smoothing

_SPARSE = (keras.losses.SparseCategoricalCrossentropy, SparseLabelSmoothingCrossentropy,
           SparseCategoricalFocalCrossentropy)
_CATEGORICAL = (keras.losses.CategoricalCrossentropy, keras.losses.CategoricalFocalCrossentropy)


@dataclasses.dataclass
class TrainingLoss:
    """What to compile with.

    Attributes:
        loss: the loss for `fit`.
        one_hot: whether integer labels must be one-hot encoded for it (MixUp / CutMix).
        after_fit: the same loss for integer labels, to compile with after `fit` so the model
            evaluates tlkit's usual integer labels again (`None`: `loss` already does).
    """

    loss: object
    one_hot: bool = False
    after_fit: object = None


def is_sparse(loss) -> bool:
    """Whether `loss` takes integer class labels (sparse categorical cross-entropy / focal)."""
    if isinstance(loss, str):
        return loss == "sparse_categorical_crossentropy"
    return isinstance(loss, _SPARSE)


def _is_categorical(loss) -> bool:
    if isinstance(loss, str):
        return loss == "categorical_crossentropy"
    return isinstance(loss, _CATEGORICAL)


def _from_logits(loss) -> bool:
    if isinstance(loss, keras.losses.Loss):
        return bool(loss.get_config().get("from_logits", False))
    return False


def mixing_setting(config) -> str | None:
    """`"mixup"` or `"cutmix"` when the config mixes training batches, else `None`."""
    if config.mixup is not None:
        return "mixup"
    return "cutmix" if config.cutmix is not None else None


def training_loss(loss, config, *, owned: bool) -> TrainingLoss:
    """The loss for `config` given the model's `loss` (`owned`: tlkit chose it, not the user).

    Raises:
        ConfigError: MixUp / CutMix with a sparse loss the user gave, or a focal loss requested
            with a loss the user gave or a loss that is not categorical cross-entropy.
    """
    mixing = mixing_setting(config)
    sparse = is_sparse(loss)
    if mixing and sparse and not owned:
        name = "MixUp" if mixing == "mixup" else "CutMix"
        raise ConfigError(
            f"FineTuneConfig.{mixing}: {name} needs one-hot labels: it mixes the labels of two "
            f"examples, and the loss given ({loss!r}) takes integer labels. Leave `loss=` unset "
            "(tlkit then one-hot encodes the labels and uses categorical cross-entropy), or pass "
            f"one-hot labels with a categorical loss, or set {mixing} to null.")
    one_hot = bool(mixing) and sparse
    from_logits = _from_logits(loss)
    if config.loss_type == "focal":
        if not owned:
            raise ConfigError(
                "FineTuneConfig.loss_type: 'focal' replaces tlkit's cross-entropy, and a loss was "
                f"given ({loss!r}); leave `loss=` unset, or pass "
                "keras.losses.CategoricalFocalCrossentropy yourself with loss_type "
                "'cross_entropy'.")
        if not (sparse or _is_categorical(loss)):
            raise ConfigError(
                "FineTuneConfig.loss_type: 'focal' is for single-label classification "
                f"(categorical cross-entropy); the model's loss is {loss!r}. Use loss_type "
                "'cross_entropy'.")
        kwargs = dict(gamma=config.focal_gamma, from_logits=from_logits,
                      label_smoothing=config.label_smoothing)
        return TrainingLoss(focal_loss(sparse=sparse and not one_hot, **kwargs), one_hot,
                            focal_loss(sparse=True, **kwargs) if one_hot else None)
    if one_hot:
        return TrainingLoss(
            keras.losses.CategoricalCrossentropy(from_logits=from_logits,
                                                 label_smoothing=config.label_smoothing),
            True, with_label_smoothing(loss, config.label_smoothing))
    return TrainingLoss(with_label_smoothing(loss, config.label_smoothing))
