"""All pairs of rows whose cosine similarity reaches a threshold, without the N x N product.

Candidates come from a faiss index (https://github.com/facebookresearch/faiss) range search:
for unit rows, cosine >= t is squared L2 distance <= 2 (1 - t). Each candidate pair is then
re-checked exactly (the dot product of the two rows in float32, the arithmetic of a plain
`matrix @ matrix.T`), so a reported pair is never a false positive of the index.

Which index, chosen by N (`index="auto"`):

- N <= `EXACT_MAX` (20,000): `IndexFlatL2`, an exact brute-force search (blocked BLAS on all
  cores). At this size it takes seconds and misses nothing: no reason to trade recall for speed.
- N > `EXACT_MAX`: rows wider than 256 are projected on their top 256 principal axes (a
  projection only shortens distances, so no true pair is lost by it), then `IndexIVFFlat`, an inverted-file
  index over about 4 sqrt(N) k-means cells, `nprobe` = 8 nearest cells searched per row. A
  pair is missed only when its two rows fall into cells farther apart than that; near
  duplicates sit almost always in the same or an adjacent cell. `benchmarks/audit_scale.py`
  measures the recall against the exact search and the time's growth with N.

Graph indexes (HNSW) were not chosen: their range search is approximate in a way that depends
on the graph, and they cost more memory per row. ScaNN has no range search.
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

EXACT_MAX = 20_000
INDEXES = ("auto", "exact", "ivf")
_QUERY_BLOCK = 8192  # rows queried at once: bounds the memory of one range-search result
_PCA_DIMS = 256  # rows wider than this are projected for the IVF search
_PCA_SAMPLE = 4096  # rows the projection is fitted on
_SLACK = 1e-4  # index similarities are float32 sums in another order; re-checked exactly after


def similar_pairs(
    matrix: np.ndarray,
    threshold: float,
    *,
    index: str = "auto",
    nprobe: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs `(a, b)`, `a < b`, of rows with `matrix[a] . matrix[b] >= threshold`.

    Args:
        matrix: `(N, d)` L2-normalized rows (converted to C-contiguous float32).
        threshold: similarity from which a pair is returned.
        index: `"auto"` (exact up to `EXACT_MAX` rows, IVF above), `"exact"` or `"ivf"`.
        nprobe: cells searched per query by the IVF index (default: 8, at most all cells).
        seed: seed of the k-means training sample of the IVF index.

    Returns:
        `(a, b, similarity)` arrays, sorted by `(a, b)`.
    """
    import faiss

    if index not in INDEXES:
        raise ValueError(f"Expected `index` in {INDEXES}. Received: index={index!r}")
    x = np.ascontiguousarray(matrix, dtype="float32")
    n = len(x)
    empty = (np.zeros(0, "int64"), np.zeros(0, "int64"), np.zeros(0, "float32"))
    if n < 2:
        return empty
    exact = index == "exact" or (index == "auto" and n <= EXACT_MAX)
    searcher, queries = _flat(faiss, x) if exact else _ivf(faiss, x, nprobe, seed)
    # Unit rows: cosine >= t  <=>  squared L2 distance <= 2 (1 - t).
    radius = 2.0 * (1.0 - float(threshold)) + _SLACK
    found_a, found_b = [], []
    for start in range(0, n, _QUERY_BLOCK):
        lims, _, ids = searcher.range_search(queries[start : start + _QUERY_BLOCK], radius)
        rows = start + np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype("int64")))
        ids = ids.astype("int64")
        keep = ids != rows  # drops the row itself
        # A pair the IVF index finds from one side only still counts: order it, dedupe below.
        found_a.append(np.minimum(rows[keep], ids[keep]))
        found_b.append(np.maximum(rows[keep], ids[keep]))
    pairs = np.unique(np.stack([np.concatenate(found_a), np.concatenate(found_b)], axis=1), axis=0)
    a, b = pairs[:, 0], pairs[:, 1]
    # Exact re-check of every candidate, in blocks (bounded memory).
    sims = np.concatenate(
        [
            np.einsum("ij,ij->i", x[a[i : i + 65536]], x[b[i : i + 65536]])
            for i in range(0, len(a), 65536)
        ]
        or [np.zeros(0, "float32")]
    )
    keep = sims >= threshold
    return a[keep], b[keep], sims[keep]  # np.unique sorted the pairs by (a, b)


def _flat(faiss, x):
    searcher = faiss.IndexFlatL2(x.shape[1])
    searcher.add(x)
    return searcher, x


def _ivf(faiss, x, nprobe, seed):
    n, d = x.shape
    rng = np.random.default_rng(seed)
    if d > _PCA_DIMS:
        # A projection on orthonormal directions only shortens distances, so searching the
        # projected rows within the same radius keeps every true pair (the exact re-check drops
        # the extra candidates) at a fraction of the cost per row.
        axes = _principal_axes(x[_sample(rng, n, _PCA_SAMPLE)], _PCA_DIMS, rng)
        x = np.ascontiguousarray(x @ axes)
        d = _PCA_DIMS
    cells = int(min(max(4 * math.sqrt(n), 1), n // 40 or 1))  # faiss wants >= 39 rows/cell
    searcher = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, cells, faiss.METRIC_L2)
    # k-means on a seeded sample of 40 rows per cell: enough for the centroids, and what keeps
    # training from growing with N * cells.
    searcher.cp.seed = int(seed)
    searcher.cp.niter = 10
    searcher.train(x[_sample(rng, n, 40 * cells)])
    searcher.add(x)
    searcher.nprobe = int(min(nprobe or 8, cells))
    logger.debug("IVF index: %d cells, nprobe %d, %d dims", cells, searcher.nprobe, d)
    return searcher, x


def _principal_axes(sample: np.ndarray, k: int, rng) -> np.ndarray:
    """`(d, k)` orthonormal columns spanning about the top `k` principal axes of `sample`.

    Hand-written subspace iteration on the covariance: faiss's `PCAMatrix` and an exact
    `eigh` of the d x d covariance took 3-6 CPU seconds at d = 1280 on the 2-core machine, and
    scikit-learn's `randomized_svd` about 4; three iterations take a fraction of that.
    Exact axes are not needed: any orthonormal basis keeps every true pair, a rougher one only
    adds candidates for the exact re-check.
    """
    centred = (sample - sample.mean(axis=0)).astype("float64")
    cov = centred.T @ centred
    basis = _orthonormal(rng.standard_normal((cov.shape[0], k)))
    for _ in range(3):
        basis = _orthonormal(cov @ basis)
    return basis.astype("float32")


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """Columns of `y` made orthonormal through the eigendecomposition of the small `y.T @ y`
    (LAPACK's QR of a 1280 x 256 matrix took over a CPU second here)."""
    w, v = np.linalg.eigh(y.T @ y)
    return y @ (v / np.sqrt(np.maximum(w, w.max() * 1e-12)))


def _sample(rng, n, k):
    return np.sort(rng.choice(n, size=min(n, k), replace=False))
