"""tlkit.active: each selection method on a constructed case, select_to_label, simulate."""

import numpy as np
import pytest

import tlkit
from tlkit.active import PoolView, select, simulate


def test_margin_and_entropy_pick_the_least_sure_examples():
    p = np.array([[0.98, 0.01, 0.01],   # sure
                  [0.50, 0.45, 0.05],   # margin 0.05
                  [0.34, 0.33, 0.33],   # margin 0.01, highest entropy
                  [0.70, 0.20, 0.10],
                  [0.45, 0.44, 0.11]])  # margin 0.01
    view = PoolView(probabilities=p, class_names=["a", "b", "c"])
    chosen = select(view, 3, "margin")
    assert sorted(chosen.indices[:2].tolist()) == [2, 4] and chosen.indices[2] == 1
    assert chosen.scores[0] == pytest.approx(0.99)
    assert "margin 0.010" in chosen.why[0] and " vs " in chosen.why[0]
    by_entropy = select(view, 2, "entropy")
    assert by_entropy.indices.tolist() == [2, 4]
    assert by_entropy.scores[0] == pytest.approx(-np.sum(p[2] * np.log(p[2])))


def test_kcenter_picks_far_apart_points_away_from_the_labelled_set():
    rng = np.random.default_rng(0)
    corners = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype="float32")
    pool = np.concatenate([c + rng.normal(0, 0.1, (20, 2)) for c in corners])
    view = PoolView(embeddings=pool, labelled=np.array([[0.0, 0.0]]))
    chosen = select(view, 3, "kcenter")
    regions = {tuple(np.round(pool[i] / 10).astype(int)) for i in chosen.indices}
    assert regions == {(1, 0), (0, 1), (1, 1)}  # one per uncovered corner, none near (0, 0)
    assert chosen.indices[0] in range(60, 80)  # the far corner first
    assert np.all(np.diff(chosen.scores) <= 0)
    assert "farthest" in chosen.why[0]


def test_typiclust_picks_typical_points_of_uncovered_clusters():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [20, 0], [0, 20]], dtype="float32")
    groups = [c + rng.normal(0, 1.0, (30, 2)) for c in centres]
    pool = np.concatenate(groups)
    labelled = groups[0][:2] + 0.01  # cluster 0 is covered
    chosen = select(PoolView(embeddings=pool, labelled=labelled), 2, "typiclust", seed=0)
    picked_groups = sorted(int(i) // 30 for i in chosen.indices)
    assert picked_groups == [1, 2]  # the uncovered clusters, not the labelled one
    for i in chosen.indices:
        centre = centres[int(i) // 30]
        distances = np.linalg.norm(groups[int(i) // 30] - groups[int(i) // 30].mean(0), axis=1)
        # Typical = central: closer to its group's mean than most of the group.
        assert np.linalg.norm(pool[i] - pool[int(i) // 30 * 30:(int(i) // 30 + 1) * 30].mean(0)) \
            <= np.quantile(distances, 0.3)
        assert np.linalg.norm(pool[i] - centre) < 3
    assert "cluster" in chosen.why[0] and "0 labelled" in chosen.why[0]


def test_uncertainty_herding_covers_dense_regions_and_weighs_uncertainty():
    rng = np.random.default_rng(2)
    # Three tight blobs 3 apart (kernel width 0.3) and two isolated outliers; blob 0 labelled.
    centres = np.array([[0, 0], [3, 0], [0, 3]], dtype="float32")
    blobs = [c + rng.normal(0, 0.05, (20, 2)) for c in centres]
    outliers = np.array([[3.0, 3.0], [-3.0, -3.0]], dtype="float32")
    pool = np.concatenate(blobs + [outliers])  # rows 0-19, 20-39, 40-59, outliers 60-61
    labelled = blobs[0][:1] + 0.01
    plain = select(PoolView(embeddings=pool, labelled=labelled), 3, "uncertainty_herding")
    # One pick per uncovered blob, the blob's central point; never the covered blob or an
    # outlier; the third pick covers only itself (an outlier), so it gains least.
    assert sorted(int(i) // 20 for i in plain.indices[:2]) == [1, 2]
    for i in plain.indices[:2]:
        group = pool[int(i) // 20 * 20:(int(i) // 20 + 1) * 20]
        distances = np.linalg.norm(group - group.mean(0), axis=1)
        assert np.linalg.norm(pool[i] - group.mean(0)) <= np.quantile(distances, 0.5)
    assert plain.indices[2] in (60, 61) and np.all(np.diff(plain.scores) <= 0)
    assert "nearer to it than to any label or earlier pick" in plain.why[0] and "margin" not in plain.why[0]
    # The model is unsure about blob 1 only: it is covered first (without weights, blob 2 is).
    assert int(plain.indices[0]) // 20 == 2
    p = np.tile([0.98, 0.02], (len(pool), 1))
    p[20:40] = [0.55, 0.45]
    weighted = select(PoolView(embeddings=pool, probabilities=p, labelled=labelled,
                               class_names=["a", "b"]), 2, "uncertainty_herding")
    assert int(weighted.indices[0]) // 20 == 1 and int(weighted.indices[1]) // 20 == 2
    assert "margin 0.100: a 0.55 vs b 0.45" in weighted.why[0]
    # Once every example is covered (all identical), the rest come at random, all of them.
    same = select(PoolView(embeddings=np.ones((4, 2))), 4, "uncertainty_herding", seed=0)
    assert sorted(same.indices.tolist()) == [0, 1, 2, 3]
    assert same.why[1:] == ["at random (every example is covered)"] * 3


def test_random_is_seeded_and_without_repeats():
    view = PoolView(embeddings=np.zeros((50, 2)))
    a, b, c = (select(view, 10, "random", seed=s) for s in (3, 3, 4))
    assert a.indices.tolist() == b.indices.tolist() != c.indices.tolist()
    assert len(set(a.indices.tolist())) == 10


def test_bad_method_and_missing_inputs_are_one_line():
    with pytest.raises(ValueError, match="Unknown selection method 'nope'; expected one of"):
        select(PoolView(embeddings=np.zeros((3, 2))), 1, "nope")
    with pytest.raises(ValueError, match="method='margin' needs the pool's probabilities"):
        select(PoolView(embeddings=np.zeros((3, 2))), 1, "margin")
    with pytest.raises(ValueError, match="n >= 1"):
        select(PoolView(embeddings=np.zeros((3, 2))), 0, "random")


def test_select_to_label_on_a_tiny_model_and_labeled_data(tmp_path):
    from tlkit.testing import tiny_image_data, tiny_model

    x, y = tiny_image_data(n=24)
    pool_x, _ = tiny_image_data(n=12, seed=5)
    data = tlkit.data.from_numpy(x, y, x_unlabeled=pool_x, val_fraction=0, test_fraction=0)
    model = tiny_model(num_classes=2)
    chosen = tlkit.select_to_label(model, data, 4, method="kcenter")  # seeded by data.train
    assert len(chosen) == 4 and len(set(chosen.indices.tolist())) == 4
    assert chosen.indices.max() < 12 and len(chosen.why) == 4 and "farthest" in chosen.why[0]
    # margin ranks by the model's own probabilities of the pool
    probs = model.predict(pool_x, verbose=0)
    top = np.sort(probs, axis=1)
    expected = np.argsort(top[:, -1] - top[:, -2], kind="stable")[:4]
    got = tlkit.select_to_label(model, pool_x, 4, method="margin")
    assert sorted(got.indices.tolist()) == sorted(expected.tolist())
    path = got.to_csv(tmp_path / "picks.csv")
    lines = open(path).read().splitlines()
    assert lines[0] == "path,index,score,why" and len(lines) == 5


def test_simulate_pairs_rounds_and_reaches_the_budgets():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 8))
    y = np.repeat(np.arange(3), 60)
    x = centres[y] + rng.normal(0, 0.3, (180, 8))
    test_y = np.repeat(np.arange(3), 20)
    test_x = centres[test_y] + rng.normal(0, 0.3, (60, 8))
    initial = np.array([0, 60, 120])
    rounds = simulate(x, y, initial, [9, 15], "kcenter", test=(test_x, test_y))
    assert [r["labelled"] for r in rounds] == [3, 9, 15]
    assert rounds[0]["picked"] == [] and len(rounds[1]["picked"]) == 6
    picked = rounds[1]["picked"] + rounds[2]["picked"]
    assert len(set(picked) | set(initial.tolist())) == 15  # nothing picked twice
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rounds)
    with pytest.raises(ValueError, match="budgets"):
        simulate(x, y, initial, [2], "random")
