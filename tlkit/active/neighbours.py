"""The k nearest neighbours of every point of a set: the graph that coverage methods work on.

Exact, computed in blocks of rows (memory: `rows x block` distances at a time, plus the
`rows x k` result), from dot products, so its cost is one `(n, d) @ (d, n)` product: about
2 s on one core for 6,000 EfficientNet-Lite0 embeddings (1,280 features).
"""

from __future__ import annotations

import numpy as np

BLOCK = 1024
"""Rows of the distance matrix held at a time."""


def nearest_neighbours(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`(indices, distances)`, both `(n, k)`: each point's `k` nearest points of the set
    (itself included, at distance 0), nearest first. Distances are Euclidean.

    Args:
        points: `(n, d)` array.
        k: neighbours per point (at most `n`).

    Example: `nearest_neighbours(np.array([[0.0], [1.0], [5.0]]), 2)` gives indices
    `[[0, 1], [1, 0], [2, 1]]` and distances `[[0, 1], [0, 1], [0, 4]]`.
    """
    points = np.asarray(points, dtype="float32").reshape(len(points), -1)
    n = len(points)
    k = max(1, min(int(k), n))
    squares = (points ** 2).sum(axis=1)
    indices = np.empty((n, k), dtype="int64")
    distances = np.empty((n, k), dtype="float32")
    for start in range(0, n, BLOCK):
        block = points[start:start + BLOCK]
        d2 = squares[start:start + BLOCK, None] - 2.0 * block @ points.T + squares[None, :]
        rows = np.arange(len(block))
        d2[rows, start + rows] = -1.0  # itself first, even among exact duplicates
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < n else np.tile(
            np.arange(n), (len(block), 1))
        part_d2 = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(part_d2, axis=1, kind="stable")
        indices[start:start + BLOCK] = np.take_along_axis(part, order, axis=1)
        distances[start:start + BLOCK] = np.sqrt(np.maximum(
            np.take_along_axis(part_d2, order, axis=1), 0.0))
    return indices, distances
