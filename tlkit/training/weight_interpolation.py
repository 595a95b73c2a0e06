"""WiSE-FT (Wortsman et al., 2022): interpolate the weights before and after fine-tuning,
`(1 - alpha) * pretrained + alpha * fine_tuned`, with `alpha` chosen on validation. It costs
evaluations only, and the paper reports gains in and (more) out of distribution."""

from __future__ import annotations

import logging
import os

import keras
import numpy as np

logger = logging.getLogger(__name__)

ALPHAS = (0.25, 0.5, 0.75, 1.0)


def wise_ft(model, pretrained_weights, validation, alphas=ALPHAS, metric="accuracy") -> dict:
    """Sets `model` to the best interpolation of `pretrained_weights` and its current weights.

    Args:
        model: the fine-tuned model (compiled, e.g. by `tlkit.fine_tune`).
        pretrained_weights: `model.get_weights()` taken before fine-tuning (for LP-FT: after
            the head phase / linear probe, so the head is interpolated too).
        validation: data for `model.evaluate`: a dataset of `(x, y)` or `(x, y)` arrays.
        alphas: weights of the fine-tuned end, each in [0, 1]; the best on `validation` wins
            (ties: the larger alpha).
        metric: the `evaluate` result to maximize (`"loss"` is minimized).

    Returns:
        `{"alpha": chosen, "metric": metric, "scores": {alpha: value}}`; `model` holds the
        chosen weights.
    """
    if pretrained_weights is None:
        raise ValueError("wise_ft: no pretrained weights; pass model.get_weights() taken before "
                         "fine-tuning (the run kept none).")
    alphas = tuple(float(a) for a in alphas)
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise ValueError(f"wise_ft: alphas must be in [0, 1]. Received: {alphas}")
    fine = [np.asarray(w) for w in model.get_weights()]
    pretrained = [np.asarray(w) for w in pretrained_weights]
    if len(pretrained) != len(fine) or any(p.shape != f.shape for p, f in zip(pretrained, fine)):
        raise ValueError("wise_ft: pretrained_weights do not match the model's weights (take "
                         "them with model.get_weights() from this model).")
    scores = {}
    for alpha in alphas:
        model.set_weights([f if not np.issubdtype(f.dtype, np.floating)
                           else ((1 - alpha) * p + alpha * f).astype(f.dtype)
                           for p, f in zip(pretrained, fine)])
        args = tuple(validation) if isinstance(validation, (tuple, list)) else (validation,)
        result = model.evaluate(*args, verbose=0, return_dict=True)
        if metric not in result:
            model.set_weights(fine)
            raise ValueError(f"wise_ft: metric {metric!r} is not among {sorted(result)}.")
        scores[alpha] = float(result[metric])
    sign = -1.0 if metric == "loss" else 1.0
    best = max(scores, key=lambda a: (sign * scores[a], a))
    model.set_weights([f if not np.issubdtype(f.dtype, np.floating)
                       else ((1 - best) * p + best * f).astype(f.dtype)
                       for p, f in zip(pretrained, fine)])
    logger.info("WiSE-FT: alpha %.2f (%s %s)", best, metric, scores)
    return {"alpha": best, "metric": metric, "scores": scores}


class FineTuneStartWeights(keras.callbacks.Callback):
    """Keeps `model.get_weights()` from the start of epoch `epoch` (the end of the head phase,
    or of a linear probe run before `fit`): the "pretrained" end of WiSE-FT, with the new head.

    Args:
        epoch: the epoch (0-based) at whose start the weights are taken (`head_epochs`).
        path: optional `.npz` file that keeps them across an interrupted and resumed `fit`
            (`fine_tune` puts it in its `checkpoint_dir`).
    """

    def __init__(self, epoch: int, path: str | None = None):
        super().__init__()
        self.epoch, self.path, self.weights = int(epoch), path, None

    def on_train_begin(self, logs=None):
        self.weights = None
        if self.path and os.path.exists(self.path):
            with np.load(self.path) as saved:
                self.weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.epoch or self.weights is not None:
            return
        self.weights = [np.array(w) for w in self.model.get_weights()]
        if self.path:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            tmp = self.path + ".tmp.npz"
            np.savez(tmp, *self.weights)
            os.replace(tmp, self.path)
