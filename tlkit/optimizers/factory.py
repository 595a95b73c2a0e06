"""`from_config`: the optimizer a `tlkit.FineTuneConfig` describes."""

from __future__ import annotations

from tlkit.optimizers.layerwise import layerwise
from tlkit.optimizers.util import clone_optimizer

NO_DECAY = ("^bias$", "^gamma$", "^beta$")
"""Variable names (regular expressions) the fine-tuning optimizer never weight-decays."""


def from_config(config, learning_rate, model=None, optimizer=None):
    """The optimizer of a `tlkit.FineTuneConfig`: class `config.optimizer` (with
    `weight_decay`, never on biases and normalization parameters: `NO_DECAY`), the given `learning_rate` (a float or schedule), wrapped for layer-wise LRs
    over `model`'s groups when `config.layer_decay` (x factor per group down from the head) or
    the ULMFiT divisor `config.layerwise_decay` is set and a `model` is given.

    `optimizer`: an unbuilt optimizer instance whose class and config replace the name's.
    """
    import keras

    if optimizer is None:
        settings = {"learning_rate": 1e-3}
        if config.weight_decay is not None:
            settings["weight_decay"] = float(config.weight_decay)
        optimizer = keras.optimizers.get({"class_name": config.optimizer, "config": settings})
    new = clone_optimizer(optimizer, learning_rate=learning_rate)
    if config.ema_momentum is not None:
        inner = getattr(new, "inner_optimizer", new)
        # Keras's own EMA (read when the optimizer builds); SwapEMAWeights evaluates with it.
        inner.use_ema, inner.ema_momentum = True, float(config.ema_momentum)
    decay = config.layerwise_decay
    if config.layer_decay is not None:
        decay = 1.0 / float(config.layer_decay)  # x0.75 per group == divisor 1/0.75
    if decay is not None and model is not None:
        new = layerwise(new, model, decay=decay)
    if getattr(getattr(new, "inner_optimizer", new), "weight_decay", None):
        # Biases and normalization scales/offsets are not decayed (as in timm, BERT, MAE).
        getattr(new, "inner_optimizer", new).exclude_from_weight_decay(var_names=NO_DECAY)
    return new
