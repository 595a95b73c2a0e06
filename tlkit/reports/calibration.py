"""Calibration: expected calibration error, reliability curve and temperature scaling.

Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks") divides the
logits by one scalar `T` fitted on held-out data; the predicted class never changes, only how
confident the probabilities are. tlkit models end in a softmax, so the logits are recovered as
`log(p)` (equal to the logits up to a per-example constant, which softmax ignores).
"""

from __future__ import annotations

import numpy as np

from tlkit.reports._predictions import as_predictions

DEFAULT_BINS = 15
# Temperatures searched: exp(-3) .. exp(3), i.e. about 0.05 .. 20.
_LOG_T_BOUNDS = (-3.0, 3.0)
_EPS = 1e-12


def _check(y_true, probs):
    y_true, probs = as_predictions(y_true, probs)
    probs = probs.astype("float64")
    if not len(y_true):
        raise ValueError("Calibration needs at least one example. Received: 0 examples")
    return y_true, probs


def reliability_curve(y_true, probs, bins: int = DEFAULT_BINS) -> dict:
    """Top-1 confidence against accuracy in `bins` equal-width confidence bins.

    Returns:
        `{"edges": [bins + 1], "confidence": [bins], "accuracy": [bins], "count": [bins]}`;
        empty bins have `None` confidence and accuracy.
    """
    y_true, probs = _check(y_true, probs)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; a confidence of 0 goes to bin 0.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    acc_sum = np.bincount(index, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, mean_acc = conf_sum / count, acc_sum / count
    return {
        "edges": edges.tolist(),
        "confidence": [float(c) if n else None for c, n in zip(mean_conf, count)],
        "accuracy": [float(a) if n else None for a, n in zip(mean_acc, count)],
        "count": count.astype(int).tolist(),
    }


def expected_calibration_error(y_true, probs, bins: int = DEFAULT_BINS) -> float:
    """ECE: the example-weighted mean of |accuracy - confidence| over confidence bins.

    Example:
    ```python
    expected_calibration_error([0, 1], [[0.9, 0.1], [0.9, 0.1]])  # 0.4
    ```
    """
    curve = reliability_curve(y_true, probs, bins)
    total = sum(curve["count"])
    return float(
        sum(
            n * abs(a - c)
            for n, a, c in zip(curve["count"], curve["accuracy"], curve["confidence"])
            if n
        )
        / total
    )


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """Softmax probabilities with the logits divided by `temperature` (> 1 softens)."""
    logits = np.log(np.clip(np.asarray(probs, dtype="float64"), _EPS, 1.0)) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def _nll(y_true, probs) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], _EPS, 1.0)).mean())


def fit_temperature(y_true, probs) -> float:
    """The temperature that minimises the negative log-likelihood of `y_true`.

    Fitted with `scipy.optimize.minimize_scalar` (bounded) over `log T`: one scalar, a smooth
    1-D objective, a few dozen NumPy evaluations and no graph to build, where a Keras variable
    and an optimizer would need a learning rate and a step count to converge as reliably.

    Args:
        y_true: labels `(n,)` of held-out data (the validation split; never the test split).
        probs: the model's probabilities `(n, k)` on it.

    Returns:
        `T` in about `[0.05, 20]`.
    """
    from scipy.optimize import minimize_scalar

    y_true, probs = _check(y_true, probs)
    result = minimize_scalar(
        lambda log_t: _nll(y_true, apply_temperature(probs, np.exp(log_t))),
        bounds=_LOG_T_BOUNDS,
        method="bounded",
    )
    return float(np.exp(result.x))


def calibration_summary(
    y_true, probs, temperature: float | None = None, bins: int = DEFAULT_BINS
) -> dict:
    """ECE and reliability curve of `probs`, and after temperature scaling when given.

    Returns:
        `{"bins", "ece", "curve", "temperature", "ece_scaled", "curve_scaled"}` (the last two
        `None` without a temperature).
    """
    out = {
        "bins": int(bins),
        "ece": expected_calibration_error(y_true, probs, bins),
        "curve": reliability_curve(y_true, probs, bins),
        "temperature": None,
        "ece_scaled": None,
        "curve_scaled": None,
    }
    if temperature is not None:
        scaled = apply_temperature(probs, temperature)
        out.update(
            temperature=float(temperature),
            ece_scaled=expected_calibration_error(y_true, scaled, bins),
            curve_scaled=reliability_curve(y_true, scaled, bins),
        )
    return out
