"""benchmarks/strategies_text.py: the text rows of the strategies benchmark (#19), on the
`tiny_text` stand-in backbone and a few made-up tweets, through the script's own code path."""

import json
import os
import sys

import numpy as np
import pytest

_PATH = list(sys.path)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "benchmarks"))
import strategies  # noqa: E402
import strategies_text  # noqa: E402

pytestmark = pytest.mark.slow

sys.path[:] = _PATH  # the scripts add benchmarks/ too: keep its modules from shadowing others

WORDS = {0: ["awful", "bad", "crash"], 1: ["car", "road", "today"], 2: ["great", "love", "safe"]}


def _tweets(per_class, seed):
    rng = np.random.default_rng(seed)
    x, y = [], []
    for c, words in WORDS.items():
        for _ in range(per_class):
            x.append(" ".join(rng.choice(words, 4)))
            y.append(c)
    return np.asarray(x, dtype=object), np.asarray(y, dtype="int64")


@pytest.mark.step_floor
def test_text_rows_run_end_to_end_and_pair_the_methods(tmp_path, monkeypatch):
    monkeypatch.setattr(strategies_text, "BACKBONE", ("tiny_text", {"folder": str(tmp_path / "b")}))
    monkeypatch.setattr(strategies_text, "load_tweets", lambda per_class: (
        _tweets(12, 0), _tweets(per_class, 1), ["negative", "neutral", "positive"]))
    out = tmp_path / "text.json"
    strategies_text.main(["--budgets", "5", "--seeds", "0", "--test-per-class", "4",
                          "--rows", "prototype", "linear_probe", "full", "auto",
                          "full_defaults", "linear_probe_C4", "--restore-rules",
                          "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["shifted"] is None and result["test_examples"] == 12
    assert [r["method"] for r in result["rows"]] == ["prototype", "linear_probe", "full", "auto",
                                                     "full_defaults", "linear_probe_C4"]
    rows = {r["method"]: r for r in result["rows"]}
    # 12 training tweets are one batch: the benchmark's rows pass the floor of 8 steps per
    # epoch for their (1, 2) epochs; the defaults' (1, 3) get `full`'s own floor, 16.
    assert rows["full"]["steps"]["fine"] == {"epochs": 2, "steps": 16}
    assert rows["full_defaults"]["steps"]["head"] == {"epochs": 1, "steps": 16}
    assert rows["full_defaults"]["steps"]["fine"] == {"epochs": 3, "steps": 48}
    assert rows["linear_probe_C4"]["C"] == 4.0
    rules = rows["full_defaults"]["restore_rules"]  # the rules on the run's 4 epochs
    assert len(rules["losses"]) == 4 and rules["never"]["epoch"] >= 1
    # The library's rule ran: on this 3-tweet validation split (< restore_best_from), the last
    # epoch stays.
    assert rows["full_defaults"]["steps"]["early_stopping"]["kept_last_epoch"] == 3
    assert rules["last"]["accuracy"] == pytest.approx(rows["full_defaults"]["clean"]["accuracy"],
                                                      abs=1e-6)
    assert result["restore_rules"]["5"]["full_defaults"]["seeds"] == 1
    assert all(r["shifted"] is None and 0 <= r["clean"]["accuracy"] <= 1 for r in result["rows"])
    assert rows["auto"]["strategy"] in ("lp_ft", "linear_probe")  # auto says what it ran
    per = result["summary"]["5"]
    assert "shifted_accuracy" not in per["full"]
    # Paired to `full` on the clean set only; the targets skip what needs a shifted set.
    assert per["auto"]["clean_accuracy_vs_full"][0] == pytest.approx(
        per["auto"]["clean_accuracy"][0] - per["full"]["clean_accuracy"][0])
    assert "auto_minus_full_shifted" not in result["targets"]["5"]
    assert result["estimated_seconds"] > 0
    assert (tmp_path / "text.png").exists()
    strategies_text.main(["--out", str(out), "--table"])  # reads it back


def _row(method, seed, accuracy, shifted=None):
    def s(a):
        return {"accuracy": a, "macro_f1": a, "ece": 0.1}

    return {"budget": 5, "seed": seed, "method": method, "seconds": 10.0, "clean": s(accuracy),
            "shifted": None if shifted is None else s(shifted)}


def test_tables_of_a_text_summary_leave_the_shifted_columns_empty():
    rows = [_row("full", 0, 0.5), _row("full", 1, 0.6),
            _row("auto", 0, 0.55), _row("auto", 1, 0.7)]
    summary = strategies.summarize(rows)
    assert summary["5"]["auto"]["clean_accuracy_vs_full"][0] == pytest.approx(0.075)
    line = strategies.table(summary).splitlines()[-1]
    assert line.startswith("| 5 | auto | 0.625 ± 0.106 |  | +0.075 [")
    tables = strategies.budget_tables(summary)
    assert "shifted" not in tables  # one table, the paired differences in the clean cells
    assert tables.splitlines()[-1].startswith("| auto | 0.625 ± 0.106 (+0.075 [")
    assert strategies.targets(summary, rows)["5"] == {
        "best_clean": "auto", "best_clean_accuracy": pytest.approx(0.625),
        "auto_minus_best_clean": 0.0}
    # The image task's rows keep their shifted columns.
    image = strategies.summarize([_row("full", 0, 0.5, 0.4), _row("auto", 0, 0.6, 0.45)])
    assert strategies.targets(image)["5"]["auto_minus_full_shifted"] == pytest.approx(0.05)
    tables = strategies.budget_tables(image).split("\n\n")
    assert [t.splitlines()[0].split(" | ")[0] for t in tables] == [
        "| clean test accuracy", "| shifted test accuracy (Δ vs full [95% CI])"]
    assert tables[0].splitlines()[-1] == "| auto | 0.600 |"


def test_duration_estimate_counts_the_forward_passes():
    forward_s, test = 0.02, 450
    # Budget 100: 80 + 20 per class, 15 batches of 16 (no stretching): head 1 epoch, fine 2.
    n_train, n_val = 240, 60
    fine = 2 * (strategies_text.TRAIN_COST * n_train + n_val)
    full = (n_train + n_val + fine + test) * forward_s + strategies_text.ROW_OVERHEAD_S \
        + 3 * strategies_text.EPOCH_OVERHEAD_S
    assert strategies_text.estimate_seconds(["full"], [100], [0], test, forward_s) == \
        pytest.approx(full)
    # Seeds multiply; budget 5's 12 training tweets are stretched to 8 steps per epoch.
    assert strategies_text.estimate_seconds(["full"], [100], [0, 1, 2], test, forward_s) == \
        pytest.approx(3 * full)
    small = strategies_text.estimate_seconds(["lp_ft"], [5], [0], 0, forward_s)
    fine5 = 16 * (strategies_text.TRAIN_COST * 12 + 3)
    assert small == pytest.approx((12 + 6 + fine5) * forward_s + strategies_text.ROW_OVERHEAD_S
                                  + 16 * strategies_text.EPOCH_OVERHEAD_S)


def test_parametric_rows_fix_the_probe_c_and_the_fine_tuning_lr():
    kwargs = strategies.fine_tune_kwargs("lp_ft_C0.001_LR3e-4", has_val=True)
    assert (kwargs["strategy"], kwargs["probe_c"], kwargs["lr"]) == ("lp_ft", 0.001, 3e-4)
    assert kwargs["head_lr"] == 1e-3  # only the fine-tuning LR moves
    full = strategies.fine_tune_kwargs("full_LR3e-4", has_val=True)
    assert (full["strategy"], full["lr"]) == ("full", 3e-4) and "probe_c" not in full
    assert strategies.fine_tune_kwargs("lp_ft_C10", has_val=False)["probe_c"] == 10.0
    assert strategies.records_curve("lp_ft_C0.001") and not strategies.records_curve("ema")
    assert strategies.parametric("lp_ft_C0.001_T10") == ("lp_ft", None, 0.001, 10.0)
    assert strategies.fine_tune_kwargs("auto_T3", has_val=True)["probe_temperature"] == 3.0
    assert "probe_temperature" not in full
    # C and T only with LP-FT / auto; no LR variants of the hand-written baselines; C and LR > 0.
    for name in ("full_C1", "full_T2", "keras_guide_LR1e-3", "lp_ft_C0", "lp_ft_T0", "lp_ft_lr",
                 "nope_LR1e-4"):
        assert strategies.parametric(name) is None, name
    with pytest.raises(SystemExit):
        strategies.main(["--rows", "full_C1", "--table"])
    with pytest.raises(SystemExit):  # the text rows take the same names, and refuse the same
        strategies_text.main(["--rows", "keras_guide_LR1e-3", "--table"])


def test_temperature_scaled_ece_is_fitted_on_validation_and_summarized():
    """Under-confident probabilities (right 90% of the time at 0.45 confidence): the temperature
    fitted on the validation split sharpens them (T < 1) and lowers the test ECE; the summary
    carries the means as `ts_*`."""
    rng = np.random.default_rng(0)

    def under_confident(n):
        y = rng.integers(0, 3, n)
        guess = np.where(rng.random(n) < 0.9, y, (y + 1) % 3)
        probs = np.full((n, 3), 0.275)
        probs[np.arange(n), guess] = 0.45
        return y, probs

    y_val, p_val = under_confident(60)
    y_test, p_test = under_confident(200)
    both = np.concatenate([p_test, p_test])  # clean, then "shifted"
    scaled = strategies.temperature_scaled(y_val, p_val, y_test, both)
    before = strategies.scores(y_test, p_test)["ece"]
    assert scaled["temperature"] < 1 and scaled["val_examples"] == 60
    assert scaled["clean_ece"] < before / 3 and scaled["shifted_ece"] == scaled["clean_ece"]
    rows = [{**_row("auto", seed, 0.9), "temperature_scaled": scaled} for seed in (0, 1)]
    entry = strategies.summarize(rows)["5"]["auto"]
    assert entry["ts_clean_ece"] == pytest.approx(scaled["clean_ece"])
    assert entry["ts_temperature"] == pytest.approx(scaled["temperature"])
    assert "ts_clean_ece" not in strategies.summarize([_row("auto", 0, 0.9)])["5"]["auto"]


def test_defaults_rows_pair_with_full_defaults_and_lora_rows_with_their_strategy():
    rows = [_row("full", 0, 0.5), _row("full", 1, 0.5)]
    for seed, (full, auto, lora) in enumerate([(0.6, 0.7, 0.72), (0.5, 0.7, 0.69)]):
        rows += [_row("full_defaults", seed, full), _row("auto_defaults", seed, auto),
                 _row("lora_auto_defaults", seed, lora)]
    per = strategies.summarize(rows)["5"]
    assert per["auto_defaults"]["clean_accuracy_vs_full"][0] == pytest.approx(0.15)
    assert per["lora_auto_defaults"]["clean_accuracy_vs_full"][0] == pytest.approx(0.155)
    assert per["lora_auto_defaults"]["clean_accuracy_vs_without_lora"][0] == pytest.approx(0.005)
    assert "clean_accuracy_vs_full" not in per["full_defaults"]


def test_restore_rules_pick_the_epoch_each_rule_hands_back_and_pair_them():
    # A 10-example split: the head epoch has the lowest loss, fine-tuning the higher accuracy.
    history = {"val_loss": [1.8, 2.3, 2.2, 2.1], "val_accuracy": [0.2, 0.4, 0.4, 0.5]}
    rules = strategies.restore_rules(history, [0.35, 0.5, 0.52, 0.54], 1, 10)
    assert [rules[r]["epoch"] for r in ("always", "never", "noise_se", "last")] == [0, 3, 3, 3]
    assert rules["always"]["accuracy"] == 0.35 and rules["never"]["accuracy"] == 0.54
    # The head epoch wins on accuracy by more than one standard error (0.13 at p=0.7, n=10).
    ahead = strategies.restore_rules({"val_loss": [1.0, 2.0, 1.5, 1.9],
                                      "val_accuracy": [0.7, 0.3, 0.4, 0.3]}, [0.6, 0.3, 0.4, 0.3],
                                     1, 10)
    assert (ahead["never"]["epoch"], ahead["noise_se"]["epoch"]) == (2, 0)
    rows = [{"budget": 5, "seed": s, "method": "full_defaults", "steps": {"head": {"epochs": 1}},
             "restore_rules": rules} for s in (0, 1)]
    summary = strategies.rules_summary(rows)["5"]["full_defaults"]
    assert summary["always"][0] == pytest.approx(0.35)
    assert summary["always_head_epoch_restored"] == 2 and summary["never_head_epoch_restored"] == 0
    assert summary["always_vs_never"][0] == pytest.approx(-0.19)


def test_fortunes_are_read_one_class_per_topic_file(tmp_path):
    for name in strategies_text.FORTUNE_CATEGORIES:
        entries = [f"{name} saying {i}\n  second line" for i in range(7)]
        entries.append(f"{name}  saying 0 second line")  # a repeat, once whitespace collapses
        (tmp_path / name).write_text("\n%\n".join(entries) + "\n%\n")
    (x_pool, y_pool), (x_test, y_test), names = strategies_text.load_fortunes(2, str(tmp_path))
    assert names == list(strategies_text.FORTUNE_CATEGORIES)
    assert np.bincount(y_test).tolist() == [2] * 5 and np.bincount(y_pool).tolist() == [5] * 5
    assert "computers saying 1 second line" in set(x_pool) | set(x_test)  # whitespace collapsed
    with pytest.raises(SystemExit, match="no fortune file 'computers'"):
        strategies_text.load_fortunes(2, str(tmp_path / "missing"))


def test_merged_results_keep_every_run_and_recompute_the_summary(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"command": "run a", "commit": "abc", "defaults_overrides": {},
                                 "rows": [_row("full_defaults", 0, 0.5), _row("auto", 0, 0.7)]}))
    later = {**_row("full_defaults", 1, 0.6), "budget": 25}
    second.write_text(json.dumps({"command": "run b", "commit": "def",
                                  "rows": [_row("full_defaults", 0, 0.9), later]}))
    strategies.merge_results(str(first), [str(second)])
    merged = json.loads(first.read_text())
    assert merged["commands"] == ["run a", "run b"] and merged["commit"] == "abc"
    assert [(r["budget"], r["seed"], r["method"]) for r in merged["rows"]] == [
        (5, 0, "full_defaults"), (5, 0, "auto"), (25, 1, "full_defaults")]
    assert merged["rows"][0]["clean"]["accuracy"] == 0.5  # the first file's row wins
    assert merged["summary"]["25"]["full_defaults"]["clean_accuracy"][0] == pytest.approx(0.6)
    assert merged["merged_from"] == [str(second)]
