"""similar_pairs(): all pairs at or above a cosine threshold, exact or through a faiss IVF index."""

import numpy as np
import pytest

from tlkit.data.audit._similar_pairs import similar_pairs


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def _planted(n=4000, dim=64, seed=0):
    """Clustered rows with 40 near copies whose cosine spreads around 0.98."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim))
    x = centres[rng.integers(0, 40, n)] + rng.standard_normal((n, dim))
    chosen = rng.choice(n, 80, replace=False)
    x[chosen[40:]] = x[chosen[:40]] + rng.uniform(0.02, 0.3, (40, 1)) * rng.standard_normal(
        (40, dim)
    )
    return _unit(x)


def _brute_force(x, threshold):
    sims = x @ x.T
    a, b = np.nonzero(np.triu(sims >= threshold, k=1))
    return set(zip(a.tolist(), b.tolist()))


@pytest.mark.parametrize("index", ["exact", "ivf"])
def test_similar_pairs_matches_the_full_product(index):
    x = _planted()
    truth = _brute_force(x, 0.98)
    assert 10 < len(truth) < 80  # some planted copies fall below the threshold
    a, b, sims = similar_pairs(x, 0.98, index=index)
    assert set(zip(a.tolist(), b.tolist())) == truth
    assert np.all(a < b)
    np.testing.assert_allclose(sims, np.einsum("ij,ij->i", x[a], x[b]), rtol=1e-6)


def test_similar_pairs_projects_wide_rows_without_losing_pairs():
    x = _planted(n=3000, dim=400, seed=1)  # wider than the 256 PCA dimensions of the IVF index
    a, b, _ = similar_pairs(x, 0.98, index="ivf")
    assert set(zip(a.tolist(), b.tolist())) == _brute_force(x, 0.98)


def test_similar_pairs_edge_cases():
    one = _unit(np.ones((1, 8)))
    assert all(len(v) == 0 for v in similar_pairs(one, 0.9))
    assert all(len(v) == 0 for v in similar_pairs(np.eye(2, dtype="float32"), 0.9))
    same = _unit(np.ones((3, 8)))  # three identical rows: three pairs
    a, b, _ = similar_pairs(same, 0.999)
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1), (0, 2), (1, 2)]
    with pytest.raises(ValueError, match="index"):
        similar_pairs(same, 0.9, index="hnsw")


def test_similar_pairs_ivf_keeps_a_cluster_of_many_duplicates_whole():
    # 300 near copies of one row among 3,000 others: 44,850 pairs, none dropped (a k-NN search
    # with a small k would truncate them; the range search has no k).
    rng = np.random.default_rng(2)
    others = rng.standard_normal((3000, 96))
    base = rng.standard_normal(96)
    copies = base + 0.01 * rng.standard_normal((300, 96))
    x = _unit(np.concatenate([others[:1000], copies, others[1000:]]))
    a, b, _ = similar_pairs(x, 0.98, index="ivf")
    found = set(zip(a.tolist(), b.tolist()))
    assert found == _brute_force(x, 0.98)
    assert len(found) >= 300 * 299 // 2


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_similar_pairs_ivf_recall_on_unclustered_rows():
    # Rows without clear clusters (what makes k-means cells unequal) and 1% planted near copies:
    # the IVF search finds at least 95% of the exact search's pairs (all of them here).
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12_000, 320))
    chosen = rng.choice(len(x), 240, replace=False)
    x[chosen[120:]] = x[chosen[:120]] + rng.uniform(0.05, 0.2, (120, 1)) * rng.standard_normal(
        (120, 320)
    )
    x = _unit(x)
    exact = set(zip(*(v.tolist() for v in similar_pairs(x, 0.98, index="exact")[:2])))
    found = set(zip(*(v.tolist() for v in similar_pairs(x, 0.98, index="ivf")[:2])))
    assert len(exact) > 50 and found <= exact
    assert len(found & exact) / len(exact) >= 0.95


def test_balanced_centroids_bound_the_cells():
    import faiss

    from tlkit.data.audit._similar_pairs import _balanced_centroids

    # A 64-d Gaussian blob: plain k-means leaves some cells several times their share.
    sample = np.random.default_rng(4).standard_normal((8192, 64)).astype("float32")
    centroids = _balanced_centroids(faiss, sample, 64, seed=0)
    flat = faiss.IndexFlatL2(64)
    flat.add(centroids)
    sizes = np.bincount(flat.search(sample, 1)[1].ravel(), minlength=len(centroids))
    assert sizes.max() <= 2 * len(sample) / 64 * 1.01
