"""Random sampling: the baseline every selection method must beat."""

from __future__ import annotations

import numpy as np

from tlkit.active.pool_view import Picks, PoolView


def random(view: PoolView, n: int, rng: np.random.Generator) -> Picks:
    """`n` examples drawn uniformly without replacement (seeded by `rng`). Score: the uniform
    draw that ordered them (meaningless beyond the order).

    Example: `random(PoolView(embeddings=e), 5, np.random.default_rng(0))`.
    """
    draw = rng.random(view.size)
    order = np.argsort(-draw)[:n]
    return Picks(order, draw[order], ["drawn at random (the baseline)"] * len(order))
