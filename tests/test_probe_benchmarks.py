"""benchmarks/probe_c.py's C rules and tables (#19), on made-up features."""

import os
import sys

import numpy as np
import pytest

_PATH = list(sys.path)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import probe_c  # noqa: E402

sys.path[:] = _PATH  # the scripts add benchmarks/ too: keep its modules from shadowing others


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_cv_rule_takes_the_best_mean_fold_accuracy_and_falls_back_at_one_per_class():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rng = np.random.default_rng(0)
    y = np.arange(40) % 4
    x = rng.normal(size=(40, 30)) + np.eye(4)[y] @ rng.normal(size=(4, 30)) * 0.7
    C, how = probe_c.choose_by_cv(x, y)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    mean = {c: cross_val_score(LogisticRegression(C=c, max_iter=1000), x, y, cv=folds).mean()
            for c in sorted(probe_c.CS)}
    assert (C, how) == (max(mean, key=mean.get), "5-fold cross-validation")
    assert probe_c.choose_by_cv(x[:12], y[:12])[1] == "3-fold cross-validation"
    assert probe_c.choose_by_cv(x[:4], y[:4]) == (0.01, "one example per class: the smallest C")


def test_summary_pairs_every_rule_with_cv_and_the_table_shows_it():
    def cell(clean, shifted, C=0.01):
        return {"clean": clean, "shifted": shifted, "C": C}

    rows = [{"budget": 5, "seed": s, "cv": cell(0.70 + s / 100, 0.5),
             "largest": cell(0.68 + s / 100, 0.55, 10.0), "C=0.01": cell(0.70 + s / 100, 0.5)}
            for s in range(3)]
    summary = probe_c.summarize(rows)
    largest = summary["5"]["largest"]
    assert np.isclose(largest["clean"], 0.69) and np.isclose(largest["shifted"], 0.55)
    assert np.allclose(largest["cv_minus_this_clean"][0], 0.02)
    assert np.allclose(largest["cv_minus_this_shifted"][0], -0.05)
    assert summary["5"]["seeds"] == 3
    text = probe_c.table(summary)
    assert "| largest | 0.690 · 0.550 (+0.020 [+0.020, +0.020]) |" in text
    assert "| cv | 0.710 · 0.500 |" in text
    assert "| split |  |" in text  # a rule without rows at this budget: an empty cell
