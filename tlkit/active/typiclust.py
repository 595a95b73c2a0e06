"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022): typical examples of uncovered clusters.

At low budgets the examples worth labelling first are the typical ones of regions no label
covers yet. The pool and the labelled set are clustered together with k-means into
`labelled + n` clusters; each pick is the most typical unpicked example (the inverse of its mean
distance to its nearest neighbours within its cluster) of the largest cluster that holds the
fewest labelled or picked examples. Clusters smaller than `MIN_CLUSTER_SIZE` are used last.
k-means (scikit-learn `KMeans`) runs on the embeddings' top `CLUSTER_DIMS` principal components
(typicality on the full embeddings): on 6,000 EfficientNet-Lite0 embeddings (1,280 features)
of Fashion-MNIST, 50 clusters took 0.25 s instead of 25 s on one core (the paper's code
clusters 512-d self-supervised features, with `MiniBatchKMeans` for many clusters).
"""

from __future__ import annotations

import numpy as np

from tlkit.active.pool_view import Picks, PoolView

NEIGHBOURS = 20
"""Nearest neighbours (within the cluster) whose mean distance defines typicality (paper: 20)."""
MIN_CLUSTER_SIZE = 5
"""Clusters with fewer examples are picked from only when no larger one is left (paper: 5)."""
CLUSTER_DIMS = 64
"""Principal components k-means clusters on (fewer features are used as they are)."""


def typiclust(view: PoolView, n: int, rng: np.random.Generator) -> Picks:
    """`n` typical examples of the largest clusters not covered by a label yet. Score: the
    typicality of the pick.

    Example: with two tight groups of points, one of them already labelled, the first pick is
    the centre-most point of the other group.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    pool = view.need("embeddings", "typiclust")
    labelled = view.labelled if view.labelled is not None else np.zeros((0, pool.shape[1]))
    n = min(int(n), len(pool))
    points = np.concatenate([labelled, pool]).astype("float32")
    k = max(1, min(len(labelled) + n, len(points)))
    seed = int(rng.integers(2**31 - 1))
    reduced = points
    if points.shape[1] > CLUSTER_DIMS and len(points) > CLUSTER_DIMS:
        reduced = PCA(CLUSTER_DIMS, svd_solver="randomized", random_state=seed).fit_transform(
            points)
    clusters = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(reduced)
    owner_l, owner_p = clusters[:len(labelled)], clusters[len(labelled):]
    sizes = np.bincount(clusters, minlength=k)
    covered = np.bincount(owner_l, minlength=k)
    available = np.bincount(owner_p, minlength=k)
    typicality: dict[int, np.ndarray] = {}
    picked = np.zeros(len(pool), dtype=bool)
    order, scores, why = [], [], []
    for _ in range(n):
        open_ = available > 0
        big = open_ & (sizes >= MIN_CLUSTER_SIZE)
        candidates = np.flatnonzero(big if big.any() else open_)
        # Fewest labels first, then the largest cluster, then the lowest index.
        c = int(candidates[np.lexsort((candidates, -sizes[candidates], covered[candidates]))[0]])
        members = np.flatnonzero(owner_p == c)
        if c not in typicality:
            typicality[c] = _typicality(points[clusters == c], len(labelled), clusters == c)
        scores_c = np.where(picked[members], -np.inf, typicality[c])
        best = int(np.argmax(scores_c))
        pick = int(members[best])
        why.append(f"most typical of cluster {c} ({sizes[c]} examples, "
                   f"{covered[c]} labelled before this pick)")
        order.append(pick)
        scores.append(float(typicality[c][best]))
        picked[pick] = True
        covered[c] += 1
        available[c] -= 1
    return Picks(np.asarray(order, dtype="int64"), np.asarray(scores), why)


def _typicality(members: np.ndarray, num_labelled: int, mask: np.ndarray) -> np.ndarray:
    """Typicality of the cluster's pool examples: 1 / mean distance to their `NEIGHBOURS`
    nearest other members (labelled members count as neighbours). Rows follow the pool order
    of the cluster's pool members."""
    sq = (members ** 2).sum(axis=1)
    d2 = sq[:, None] - 2.0 * members @ members.T + sq[None, :]
    np.fill_diagonal(d2, np.inf)
    k = min(NEIGHBOURS, len(members) - 1)
    if k < 1:
        value = np.ones(len(members))
    else:
        nearest = np.sqrt(np.maximum(np.partition(d2, k - 1, axis=1)[:, :k], 0.0))
        value = 1.0 / (nearest.mean(axis=1) + 1e-12)
    is_pool = np.flatnonzero(mask) >= num_labelled
    return value[is_pool]
