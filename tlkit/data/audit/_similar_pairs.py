"""All pairs of rows whose cosine similarity reaches a threshold, without the N x N product.

Candidates come from a faiss index (https://github.com/facebookresearch/faiss) range search:
for unit rows, cosine >= t is squared L2 distance <= 2 (1 - t). Each candidate pair is then
re-checked exactly (the dot product of the two rows in float32, the arithmetic of a plain
`matrix @ matrix.T`), so a reported pair is never a false positive of the index.

Which index, chosen by N (`index="auto"`):

- N <= `EXACT_MAX` (20,000): `IndexFlatL2`, an exact brute-force search (blocked BLAS on all
  cores). At this size it takes seconds and misses nothing: no reason to trade recall for speed.
- N > `EXACT_MAX`: rows wider than 256 are projected on their top 256 principal axes (a
  projection only shortens distances, so no true pair is lost by it), then `IndexIVFFlat`, an
  inverted-file index whose cell count grows with N (about 128 rows per cell, cells kept near
  that size, see `_balanced_centroids`), each row's 2 nearest cells searched. The rows scanned
  per query stay constant, so the search grows like N; what grows faster is the assignment of
  rows to cells (a BLAS product of N rows by N / 128 centroids: under a fifth of the time at
  100k). A pair is missed only when its two rows fall into cells that are not among each
  other's 2 nearest; near duplicates sit almost always in the same cell.
  `benchmarks/audit_scale.py` measures the recall against the exact search and the growth
  with N (wall and CPU time).

Rejected after measuring on the 2-core machine (`benchmarks/audit_scale.py`'s data):
IVF with ~4 sqrt(N) cells scans ~2 sqrt(N) rows per query, O(N^1.5) in all. A graph index
(`IndexHNSWFlat` k-NN, then the pairs within the radius) grew with an exponent of about 1.45
from 10k to 100k rows: its distance computations are random memory reads that stop fitting the
cache, and a k-NN search has to be re-run for clusters of duplicates larger than k; a range
search has no k. An HNSW coarse quantizer over the IVF cells made the cells as unbalanced as
plain k-means. ScaNN has no range search.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from tlkit._extras import require

logger = logging.getLogger(__name__)

EXACT_MAX = 20_000
INDEXES = ("auto", "exact", "ivf")
_QUERY_BLOCK = 8192  # rows queried at once: bounds the memory of one range-search result
_PCA_DIMS = 256  # rows wider than this are projected for the IVF search
_PCA_SAMPLE = 4096  # rows the projection is fitted on
_ROWS_PER_CELL = 128  # IVF cells grow with N: the rows scanned per query stay constant
_TRAIN_SAMPLE = 8192  # rows the IVF cells are trained on (at least 2 per cell)
_NPROBE = 8  # nearest cells a row's pairs are looked for in, where they can be
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
        nprobe: the IVF index looks for a row's pairs in those of its `nprobe` nearest cells
            that can hold one (default: 8; most rows search one).
        seed: seed of the samples the IVF index's projection and cells are fitted on.

    Returns:
        `(a, b, similarity)` arrays, sorted by `(a, b)`.
    """
    faiss = require("faiss", "The near-duplicate search of the data audit")
    if index not in INDEXES:
        raise ValueError(f"Expected `index` in {INDEXES}. Received: index={index!r}")
    x = np.ascontiguousarray(matrix, dtype="float32")
    n = len(x)
    empty = (np.zeros(0, "int64"), np.zeros(0, "int64"), np.zeros(0, "float32"))
    if n < 2:
        return empty
    exact = index == "exact" or (index == "auto" and n <= EXACT_MAX)
    search = _flat(faiss, x) if exact else _ivf(faiss, x, threshold, nprobe, seed)
    radius = _radius(threshold)
    found_a, found_b = [], []
    for start in range(0, n, _QUERY_BLOCK):
        lims, _, ids = search(start, min(n, start + _QUERY_BLOCK), radius)
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
    """`search(start, stop, radius)`: range search of rows `start:stop` among all rows."""
    searcher = faiss.IndexFlatL2(x.shape[1])
    searcher.add(x)
    return lambda start, stop, radius: searcher.range_search(x[start:stop], radius)


def _radius(threshold: float) -> float:
    """Unit rows: cosine >= t  <=>  squared L2 distance <= 2 (1 - t)."""
    return 2.0 * (1.0 - float(threshold)) + _SLACK


def _ivf(faiss, x, threshold, nprobe, seed):
    """`search(start, stop, radius)` like `_flat`'s, through an IVF index (module docstring)."""
    from faiss.contrib.ivf_tools import add_preassigned

    n, d = x.shape
    rng = np.random.default_rng(seed)
    if d > _PCA_DIMS:
        # A projection on orthonormal directions only shortens distances, so searching the
        # projected rows within the same radius keeps every true pair (the exact re-check drops
        # the extra candidates) at a fraction of the cost per row.
        axes = _principal_axes(x[_sample(rng, n, _PCA_SAMPLE)], _PCA_DIMS, rng)
        x = np.ascontiguousarray(x @ axes)
        d = _PCA_DIMS
    cells = max(1, n // _ROWS_PER_CELL)
    # A bounded training sample (at least 2 rows per cell): training grows like `cells`, not N * cells.
    sample = x[_sample(rng, n, max(_TRAIN_SAMPLE, 2 * cells))]
    quantizer = faiss.IndexFlatL2(d)
    quantizer.add(_balanced_centroids(faiss, sample, cells, seed))
    searcher = faiss.IndexIVFFlat(quantizer, d, quantizer.ntotal, faiss.METRIC_L2)
    probes = int(min(nprobe or _NPROBE, quantizer.ntotal))
    centroids = quantizer.reconstruct_n(0, quantizer.ntotal)
    # Each row's cells that can hold a pair of it, computed once: the first (nearest) is where
    # the row is stored, all of them are searched for its pairs.
    reach = math.sqrt(_radius(threshold))
    nearest = np.concatenate(
        [
            _reachable_cells(quantizer, centroids, x[i : i + _QUERY_BLOCK], probes, reach)
            for i in range(0, n, _QUERY_BLOCK)
        ]
    )
    add_preassigned(searcher, x, np.ascontiguousarray(nearest[:, 0]))
    searcher.nprobe = probes
    logger.debug(
        "IVF index: %d cells, %d dims, %.2f cells searched per row (at most %d)",
        quantizer.ntotal, d, (nearest >= 0).sum() / n, probes,
    )  # fmt: skip

    def search(start, stop, radius):
        cells = np.ascontiguousarray(nearest[start:stop])
        # The distances to the cells only order the probes, already ordered here: zeros.
        zeros = np.zeros(cells.shape, "float32")
        return searcher.range_search_preassigned(x[start:stop], radius, cells, zeros)

    return search


def _reachable_cells(quantizer, centroids, rows, probes, reach):
    """`(len(rows), probes)` cells: each row's nearest, then those of its `probes` nearest
    that a row within distance `reach` of it can lie in; -1 (skipped by faiss) for the others.

    A row p stored in cell j is nearer to centroid c_j than to the row's nearest centroid c_0,
    so it lies beyond their bisecting hyperplane, at distance (d_j - d_0) / (2 |c_j - c_0|)
    from the row (d: squared distances to the centroids). A cell is searched when that is
    within `reach`: no pair is lost to a cell boundary, however many cells a dense group of
    duplicates was split into (up to `probes` cells), and most rows search a single cell.
    """
    dist, cells = quantizer.search(rows, probes)
    gap = np.linalg.norm(centroids[cells] - centroids[cells[:, :1]], axis=2)
    beyond = (dist - dist[:, :1]) / np.maximum(2.0 * gap, 1e-12)
    keep = beyond <= reach * (1.0 + 1e-3) + 1e-4  # float32 distances: err towards searching
    keep[:, 0] = True
    keep &= cells >= 0
    return np.where(keep, cells, -1)


def _balanced_centroids(faiss, sample: np.ndarray, cells: int, seed: int) -> np.ndarray:
    """k-means centroids of `sample`, with every cell holding over twice its share split in parts.

    On embeddings without clear clusters k-means makes cells of very unequal size (hubness: on
    the benchmark's 1280-d rows projected to 256 dims, 50k-100k rows gave an imbalance factor
    of 6-12, so a query scanned 3,000-6,000 rows instead of ~300), and the rows scanned per
    query then grow with N. faiss has no balanced k-means; splitting the oversized cells with a
    k-means of their own rows (twice: a split can still leave a large part) bounds the cells.
    """
    share = len(sample) / cells
    centroids = _kmeans(faiss, sample, cells, seed)
    for _ in range(2):
        flat = faiss.IndexFlatL2(sample.shape[1])
        flat.add(centroids)
        owner = flat.search(sample, 1)[1].ravel()
        sizes = np.bincount(owner, minlength=len(centroids))
        big = np.nonzero(sizes > 2 * share)[0]
        if not len(big):
            break
        parts = [centroids[sizes <= 2 * share]]
        for cell in big:
            rows = sample[owner == cell]
            parts.append(_kmeans(faiss, rows, math.ceil(len(rows) / share), seed))
        centroids = np.ascontiguousarray(np.concatenate(parts))
    return centroids


def _kmeans(faiss, rows, k, seed):
    kmeans = faiss.Kmeans(
        rows.shape[1], int(min(k, len(rows))), niter=10, seed=int(seed),
        min_points_per_centroid=1, max_points_per_centroid=len(rows),
    )  # fmt: skip
    kmeans.train(rows)
    return kmeans.centroids


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
