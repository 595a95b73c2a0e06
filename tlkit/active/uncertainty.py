"""Uncertainty sampling: label the examples the model is least sure about (margin, entropy).

`margin` ranks by the gap between the two most probable classes (smallest first; Scheffer et
al., 2001), `entropy` by the entropy of the predicted distribution (largest first). Both read
the model's predicted probabilities of the pool only.
"""

from __future__ import annotations

import numpy as np

from tlkit.active.pool_view import Picks, PoolView


def margin(view: PoolView, n: int, rng: np.random.Generator) -> Picks:
    """The `n` examples with the smallest top-1 minus top-2 probability. Score: `1 - margin`.

    Example: probabilities `[[0.5, 0.5], [0.9, 0.1]]` pick example 0 first (score 1.0).
    """
    p = view.need("probabilities", "margin")
    top = np.sort(p, axis=1)[:, ::-1]
    gap = top[:, 0] - top[:, 1]
    order = _top(-gap, n, rng)
    best = np.argsort(-p, axis=1)[:, :2]
    why = [
        f"margin {gap[i]:.3f}: {view.class_name(best[i, 0])} {p[i, best[i, 0]]:.2f} vs "
        f"{view.class_name(best[i, 1])} {p[i, best[i, 1]]:.2f}"
        for i in order
    ]
    return Picks(order, 1.0 - gap[order], why)


def entropy(view: PoolView, n: int, rng: np.random.Generator) -> Picks:
    """The `n` examples whose predicted distribution has the highest entropy (nats). Score:
    the entropy.

    Example: probabilities `[[0.9, 0.1], [0.5, 0.5]]` pick example 1 first (score log 2).
    """
    p = view.need("probabilities", "entropy")
    h = -np.sum(p * np.log(np.clip(p, 1e-12, 1.0)), axis=1)
    order = _top(h, n, rng)
    top = np.argmax(p, axis=1)
    most = np.log(p.shape[1])
    why = [
        f"entropy {h[i]:.3f} of at most {most:.3f}: best guess {view.class_name(top[i])} "
        f"{p[i, top[i]]:.2f}"
        for i in order
    ]
    return Picks(order, h[order], why)


def _top(score: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the `n` highest scores, ties broken at random (seeded)."""
    tiebreak = rng.random(len(score))
    return np.lexsort((tiebreak, -score))[:n]
