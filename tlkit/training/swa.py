"""Stochastic weight averaging (Izmailov et al., 2018): the final weights are the mean of the
weights at the end of the last `K` epochs.

Keras 3.15 ships an exponential moving average (the optimizer's `use_ema`, with
`keras.callbacks.SwapEMAWeights`) but no SWA, hence this small callback. The averaged weights
never ran with the stored BatchNorm statistics, so BatchNorm layers whose statistics train
(`bn_policy="update"`) get theirs recomputed on the training data afterwards, as PyTorch's
`torch.optim.swa_utils.update_bn` does: a cumulative average over one pass.
"""

from __future__ import annotations

import logging

import keras
import numpy as np

logger = logging.getLogger(__name__)


class StochasticWeightAveraging(keras.callbacks.Callback):
    """Sets the model to the mean of its weights at the ends of epochs `first_epoch`... of `fit`.

    Args:
        first_epoch: the first epoch (0-based) whose end-of-epoch weights enter the mean.
        bn_data: training batches `(x, y[, w])` (a dataset or iterable) for recomputing the
            statistics of BatchNorm layers that train; `None`: keep the statistics.

    Runs at the end of `fit`, after early stopping's restore (place it after the stopper); a
    resumed `fit` restarts the mean from the epochs it runs. Placed after
    `keras.callbacks.SwapEMAWeights(swap_on_epoch=True)`, it averages the EMA weights.
    """

    def __init__(self, first_epoch: int, bn_data=None):
        super().__init__()
        self.first_epoch, self.bn_data = int(first_epoch), bn_data
        self._sum, self.count = None, 0

    def on_train_begin(self, logs=None):
        self._sum, self.count = None, 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.first_epoch:
            return
        weights = [np.asarray(w, dtype="float64") for w in self.model.get_weights()]
        self._sum = weights if self._sum is None else [s + w for s, w in zip(self._sum, weights)]
        self.count += 1

    def on_train_end(self, logs=None):
        if not self.count:
            logger.warning("SWA: no epoch reached epoch %d (stopped early); weights unchanged",
                           self.first_epoch + 1)
            return
        current = self.model.get_weights()
        self.model.set_weights([
            (s / self.count).astype(w.dtype) if np.issubdtype(w.dtype, np.floating) else w
            for s, w in zip(self._sum, current)])
        updated = update_batch_norm(self.model, self.bn_data) if self.bn_data is not None else 0
        logger.info("SWA: weights averaged over the last %d epochs%s", self.count,
                    f"; BatchNorm statistics of {updated} layers recomputed" if updated else "")


def update_batch_norm(model, data) -> int:
    """Recomputes the moving statistics of `model`'s BatchNorm layers that train, as the
    cumulative average over `data`'s batches; returns how many layers it updated."""
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(keras.ops.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(keras.ops.ones_like(layer.moving_variance))
    try:
        for i, batch in enumerate(data):
            for layer in layers:
                layer.momentum = i / (i + 1)  # moving = mean of the batches seen so far
            model(batch[0] if isinstance(batch, (tuple, list)) else batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)
