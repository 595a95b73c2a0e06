"""All pairs of rows whose cosine similarity reaches a threshold, without the N x N product.

Candidates come from a faiss index (https://github.com/facebookresearch/faiss) range search:
for unit rows, cosine >= t is squared L2 distance <= 2 (1 - t). Each candidate pair is then
re-checked exactly (the dot product of the two rows in float32, the arithmetic of a plain
`matrix @ matrix.T`), so a reported pair is never a false positive of the index.

Which index, chosen by N (`index="auto"`):

- N <= `EXACT_MAX` (20,000): `IndexFlatL2`, an exact brute-force search (blocked BLAS on all
  cores). At this size it takes seconds and misses nothing: no reason to trade recall for speed.
- N > `EXACT_MAX`: `PCA256,IVF<cells>,Flat`: rows wider than 256 are projected by PCA (a
  projection only shortens distances, so no true pair is lost by it), then an inverted-file
  index over about 4 sqrt(N) k-means cells, `nprobe` = 16 nearest cells searched per row. A
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
        nprobe: cells searched per query by the IVF index (default: 16, at most all cells).
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
    searcher = _flat(faiss, x) if exact else _ivf(faiss, x, nprobe, seed)
    # Unit rows: cosine >= t  <=>  squared L2 distance <= 2 (1 - t).
    radius = 2.0 * (1.0 - float(threshold)) + _SLACK
    found_a, found_b = [], []
    for start in range(0, n, _QUERY_BLOCK):
        lims, _, ids = searcher.range_search(x[start : start + _QUERY_BLOCK], radius)
        rows = start + np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype("int64")))
        keep = ids > rows  # each pair once; drops the row itself
        found_a.append(rows[keep])
        found_b.append(ids[keep].astype("int64"))
    a = np.concatenate(found_a)
    b = np.concatenate(found_b)
    # Exact re-check of every candidate, in blocks (bounded memory).
    sims = np.concatenate(
        [
            np.einsum("ij,ij->i", x[a[i : i + 65536]], x[b[i : i + 65536]])
            for i in range(0, len(a), 65536)
        ]
        or [np.zeros(0, "float32")]
    )
    keep = sims >= threshold
    a, b, sims = a[keep], b[keep], sims[keep]
    order = np.lexsort((b, a))
    return a[order], b[order], sims[order]


def _flat(faiss, x):
    searcher = faiss.IndexFlatL2(x.shape[1])
    searcher.add(x)
    return searcher


def _ivf(faiss, x, nprobe, seed):
    n, d = x.shape
    cells = int(min(max(4 * math.sqrt(n), 1), n // 40 or 1))  # faiss wants >= 39 points/cell
    # A PCA projection only shortens distances, so searching the projected rows within the same
    # radius keeps every true pair (the exact re-check drops the extra candidates) at a fraction
    # of the cost per row.
    pca = f"PCA{_PCA_DIMS}," if d > _PCA_DIMS else ""
    searcher = faiss.index_factory(d, f"{pca}IVF{cells},Flat", faiss.METRIC_L2)
    ivf = faiss.extract_index_ivf(searcher)
    # k-means (and PCA) on a seeded sample of 40 rows per cell: enough for the centroids, and
    # what keeps training from growing with N * cells.
    sample = min(n, 40 * cells)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
    ivf.cp.seed = int(seed)
    ivf.cp.niter = 10
    searcher.train(x[rows])
    searcher.add(x)
    ivf.nprobe = int(min(nprobe or 16, cells))
    logger.debug(
        "IVF index: %s, %d cells, nprobe %d, trained on %d rows",
        pca or "no PCA",
        cells,
        ivf.nprobe,
        sample,
    )
    return searcher
