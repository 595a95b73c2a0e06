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
