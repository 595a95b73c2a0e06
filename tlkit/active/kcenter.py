"""k-center greedy (core-set, Sener & Savarese 2018): cover the embedding space.

Each pick is the pool example farthest from everything labelled or picked so far, so the
labelled set becomes a small cover of the pool. Distances are Euclidean between the view's
embeddings (`tlkit.select_to_label` and `simulate` L2-normalise them first: cosine geometry).
"""

from __future__ import annotations

import numpy as np

from tlkit.active.pool_view import Picks, PoolView

_CHUNK = 2048  # pool rows per block of the distance matrix to the labelled set


def kcenter(view: PoolView, n: int, rng: np.random.Generator) -> Picks:
    """Greedy k-center: `n` pool examples, each the farthest from the labelled set and the
    examples picked before it. Score: that distance (it shrinks pick after pick). Without a
    labelled set the first pick is drawn at random (seeded).

    Example: on points `[0, 0.1, 5, 10]` with `[0]` labelled, picks 10, then 5.
    """
    pool = view.need("embeddings", "kcenter")
    labelled = view.labelled
    if labelled is not None and len(labelled):
        nearest = _min_distances(pool, labelled)
    else:
        nearest = np.full(len(pool), np.inf)
    order, scores, why = [], [], []
    for _ in range(min(n, len(pool))):
        if np.isinf(nearest).all():
            pick = int(rng.integers(len(pool)))
            why.append("first pick, at random (no labelled example to cover from)")
        else:
            pick = int(np.argmax(nearest))
            why.append(f"farthest from every labelled or picked example (distance "
                       f"{nearest[pick]:.3f})")
        order.append(pick)
        scores.append(float(nearest[pick]) if np.isfinite(nearest[pick]) else np.nan)
        step = np.sqrt(np.maximum(((pool - pool[pick]) ** 2).sum(axis=1), 0.0))
        nearest = np.minimum(nearest, step)
        nearest[pick] = -1.0  # never again
    return Picks(np.asarray(order, dtype="int64"), np.asarray(scores), why)


def _min_distances(pool: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pool row to its nearest centre (blocked, float32)."""
    out = np.empty(len(pool), dtype="float64")
    sq_centres = (centres ** 2).sum(axis=1)
    for start in range(0, len(pool), _CHUNK):
        block = pool[start:start + _CHUNK]
        d2 = (block ** 2).sum(axis=1)[:, None] - 2.0 * block @ centres.T + sq_centres[None, :]
        out[start:start + _CHUNK] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out
