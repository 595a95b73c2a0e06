"""Uncertainty herding: cover the pool with kernels, weighted by how unsure the model is.

Greedy maximisation of the uncertainty-weighted kernel coverage of the pool,
`sum_i w_i * max_{s in labelled + picked} k(x_i, s)`, with the Gaussian kernel
`k(a, b) = exp(-|a - b|^2 / (2 * KERNEL_WIDTH^2))`: MaxHerding's generalised coverage (Bae, Noh
& Sutherland, ECCV 2024) weighted by uncertainty as in Uncertainty Herding (Bae, Oliveira &
Sutherland, ICLR 2025). Each pick is the pool example whose kernel adds the most weighted
coverage to examples no label is near yet. With few labels the weights are nearly flat and the
picks are typical examples of uncovered dense regions (like TypiClust); as labels accumulate
they go to dense regions the model is unsure about, never to isolated outliers.

Deviations from the papers, chosen on `benchmarks/label_efficiency.py` (Fashion-MNIST,
EfficientNet-Lite0 at 64 px, linear probe; see docs/benchmarks/label_efficiency.md):
- The weight of a pool example is the rank of its uncertainty (`1 -` the margin between its two
  most probable classes) divided by the pool size, in (0, 1], instead of a temperature-scaled
  uncertainty: rank weights need no calibration.
- A fixed kernel width (`KERNEL_WIDTH`, in the distance between L2-normalised embeddings) and
  the gains computed over each example's `NEIGHBOURS` nearest neighbours only (the coverage
  itself is updated exactly), which makes a pick cost `O(NEIGHBOURS)` with lazy greedy
  evaluation (the coverage is submodular: gains only shrink).
Without predicted probabilities every weight is 1 (plain MaxHerding).
"""

from __future__ import annotations

import heapq

import numpy as np

from tlkit.active.kcenter import _min_distances
from tlkit.active.neighbours import nearest_neighbours
from tlkit.active.pool_view import Picks, PoolView

KERNEL_WIDTH = 0.3
"""Width (sigma) of the Gaussian kernel, in Euclidean distance between L2-normalised embeddings
(`tlkit.select_to_label` normalises them). On the benchmark's 6,000 Lite0 embeddings the median
distance to the nearest other example is 0.52 and to a random one 1.1."""
NEIGHBOURS = 1000
"""Nearest neighbours of each example over which a candidate's gain is summed."""


def uncertainty_herding(view: PoolView, n: int, rng: np.random.Generator) -> Picks:
    """`n` examples, each adding the most uncertainty-weighted kernel coverage of the pool.
    Score: that gain (it shrinks pick after pick).

    Args:
        view: the pool: `embeddings` (needed), `probabilities` (the weights; without them
            every weight is 1) and `labelled` (their coverage counts from the start).
        n: examples to pick.
        rng: random choices (only when no pick adds coverage any more).

    Example:
    ```python
    view = PoolView(embeddings=e, probabilities=p, labelled=e_labelled)
    picks = uncertainty_herding(view, 10, np.random.default_rng(0))
    ```
    """
    pool = view.need("embeddings", "uncertainty_herding")
    labelled = view.labelled if view.labelled is not None else np.zeros((0, pool.shape[1]))
    n = min(int(n), len(pool))
    m = len(labelled)
    points = np.concatenate([labelled, pool]).astype("float32")
    neighbours, distances = nearest_neighbours(points, NEIGHBOURS)
    kernel = _kernel(distances)
    weights = np.zeros(len(points))
    gap = None
    if view.probabilities is not None:
        top = np.sort(view.probabilities, axis=1)
        gap = top[:, -1] - top[:, -2]
        ranks = np.empty(len(pool))
        ranks[np.argsort(-gap, kind="stable")] = np.arange(1, len(pool) + 1)
        weights[m:] = ranks / len(pool)  # the least sure weighs 1
    else:
        weights[m:] = 1.0
    covered = _kernel(_min_distances(points, labelled)) if m else np.zeros(len(points))

    def gain(c):
        nb = neighbours[c]
        return float((np.maximum(kernel[c] - covered[nb], 0.0) * weights[nb]).sum())

    initial = (np.maximum(kernel - covered[neighbours], 0.0) * weights[neighbours]).sum(axis=1)
    heap = [(-initial[c], c) for c in range(m, len(points))]
    heapq.heapify(heap)
    order, scores, why = [], [], []
    while len(order) < n:
        _, c = heapq.heappop(heap)
        g = gain(c)
        if heap and g < -heap[0][0]:  # stale: put back with its current gain
            heapq.heappush(heap, (-g, c))
            continue
        if g <= 0.0:  # nothing adds coverage any more: the rest at random
            rest = sorted([c] + [item[1] for item in heap])
            c = int(rest[int(rng.integers(len(rest)))])
            heap = [(0.0, r) for r in rest if r != c]  # already a heap: equal keys, sorted
            why.append("at random (every example is covered)")
        else:
            near = int(np.sum((kernel[c] > covered[neighbours[c]])
                              & (distances[c] <= 2.0 * KERNEL_WIDTH)))
            why.append(_why(view, c - m, g, near, gap))
        order.append(c - m)
        scores.append(g)
        step = np.sqrt(np.maximum(((points - points[c]) ** 2).sum(axis=1), 0.0))
        covered = np.maximum(covered, _kernel(step))
    return Picks(np.asarray(order, dtype="int64"), np.asarray(scores), why)


def _kernel(distance: np.ndarray) -> np.ndarray:
    return np.exp(-(np.asarray(distance, dtype="float64") ** 2) / (2.0 * KERNEL_WIDTH ** 2))


def _why(view: PoolView, i: int, g: float, near: int, gap) -> str:
    text = (f"adds coverage {g:.2f}; {near} example{'' if near == 1 else 's'} within "
            f"{2 * KERNEL_WIDTH:g} of it {'is' if near == 1 else 'are'} nearer to it than to any "
            "label or earlier pick")
    if gap is None:
        return text
    p = view.probabilities[i]
    a, b = np.argsort(-p)[:2]
    return (f"{text}, weighted by uncertainty; own margin {gap[i]:.3f}: "
            f"{view.class_name(a)} {p[a]:.2f} vs {view.class_name(b)} {p[b]:.2f}")
