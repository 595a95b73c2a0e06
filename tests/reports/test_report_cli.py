"""`tlkit train` writes report.html and fits / applies temperature scaling; `tlkit report`
regenerates the page and refuses unfinished runs and empty splits with one error line."""

import os

import numpy as np
import pytest

from tlkit import cli
from tlkit.reports import apply_temperature
from tlkit.runner import evaluation, report
from tlkit.runner.run_model import load_run_model
from tlkit.runner.rundir import RunDir

pytestmark = pytest.mark.slow

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SMOKE = os.path.join(ROOT, "recipes", "smoke.yaml")
FAST = ["--set", "phases.head_epochs=2", "--set", "phases.fine_epochs=1"]


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "smoke")
    argv = ["-q", "train", SMOKE, "--output", out, *FAST,
            "--set", "output.temperature_scaling=true", "--set", "output.export=[keras,savedmodel]"]
    assert cli.main(argv) == 0
    return out


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error line on stderr"
    return err[-1]


def test_train_writes_the_report_and_interpretation_metrics(calibrated_run, capsys):
    run = RunDir(calibrated_run)
    assert os.path.exists(run.file("report.html"))
    metrics = run.read_json("metrics.json")
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0
    assert metrics["most_confused"] and {"true", "predicted", "count"} <= set(
        metrics["most_confused"][0]
    )
    assert len(metrics["top_losses"]) == evaluation.TOP_LOSSES
    losses = [r["loss"] for r in metrics["top_losses"]]
    assert losses == sorted(losses, reverse=True)
    cal = metrics["calibration"]
    temperature = run.read_json("calibration.json")["temperature"]
    assert cal["temperature"] == pytest.approx(temperature) and cal["ece_scaled"] is not None
    card = open(run.file("reports", "model_card.md")).read()
    assert "Balanced accuracy" in card and "temperature scaling (T = " in card
    assert "### Most confused" in card
    page = open(run.file("report.html"), encoding="utf-8").read()
    assert 'id="top-losses"' in page and page.count('class="tile"') == evaluation.TOP_LOSSES
    assert 'href="export/savedmodel"' in page


def test_predict_and_exports_apply_the_runs_temperature(calibrated_run):
    import tensorflow as tf

    run = RunDir(calibrated_run)
    temperature = run.read_json("calibration.json")["temperature"]
    assert temperature != pytest.approx(1.0, abs=1e-3)
    x = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 1)).astype("float32")
    raw = load_run_model(run, calibrated=False).predict(x, verbose=0)
    served = load_run_model(run).predict(x, verbose=0)
    np.testing.assert_allclose(served, apply_temperature(raw, temperature), atol=1e-5)
    exported = tf.saved_model.load(run.file("export", "savedmodel"))
    probs = exported.serve_pixels(tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(probs, served, atol=1e-5)


def test_report_regenerates_the_page(calibrated_run, capsys):
    run = RunDir(calibrated_run)
    os.remove(run.file("report.html"))
    capsys.readouterr()
    assert cli.main(["-q", "report", calibrated_run]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run.file('report.html')}"
    page = open(run.file("report.html"), encoding="utf-8").read()
    assert 'id="calibration"' in page and "T = " in page
    # the stored temperature is reused, not fitted again on top of itself
    assert run.read_json("metrics.json")["calibration"]["temperature"] == pytest.approx(
        run.read_json("calibration.json")["temperature"]
    )


def test_report_refuses_missing_and_unfinished_runs(calibrated_run, tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nothing")]) == 1
    assert "run folder not found" in _error_line(capsys)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("recipe.yaml", "model.keras", "class_names.json"):
        with open(os.path.join(calibrated_run, name), "rb") as f:
            (unfinished / name).write_bytes(f.read())
    (unfinished / "state.json").write_text('{"stages_done": ["head"], "complete": false}')
    assert cli.main(["report", str(unfinished)]) == 1
    line = _error_line(capsys)
    assert line.startswith("tlkit: error: ") and "is not a finished run" in line
    assert not (unfinished / "report.html").exists()


def test_an_empty_or_missing_evaluation_split_is_a_clear_error():
    import tensorflow as tf

    from tlkit.data import LabeledData

    x = tf.zeros((0, 4, 4, 1))
    y = tf.zeros((0,), tf.int64)
    some = tf.data.Dataset.from_tensor_slices((tf.zeros((2, 4, 4, 1)), tf.constant([0, 1], tf.int64)))
    empty = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match="the test split is empty"):
        evaluation.eval_split(LabeledData(train=some, test=empty, class_names=["a", "b"]))
    with pytest.raises(ValueError, match="no test or validation split"):
        evaluation.eval_split(LabeledData(train=some, class_names=["a", "b"]))


def test_report_reuses_the_saved_predictions_of_the_same_model(calibrated_run, monkeypatch):
    run = RunDir(calibrated_run)
    assert os.path.exists(run.file("reports", "predictions.npz"))

    def no_predict(*args, **kwargs):
        raise AssertionError("predicted again")

    monkeypatch.setattr(evaluation, "_predict", no_predict)
    assert report.report_run(calibrated_run) == run.file("report.html")
    with np.load(run.file("reports", "predictions.npz")) as saved:
        np.savez(run.file("reports", "predictions.npz"), **{**saved, "model_sha256": "other"})
    with pytest.raises(AssertionError, match="predicted again"):  # another model: predict
        report.report_run(calibrated_run)


def test_report_asks_the_training_neighbours_before_suspecting_a_label(calibrated_run,
                                                                        monkeypatch):
    from tlkit.reports import neighbours

    real, asked, shown = neighbours.model_neighbour_votes, [], {}

    def spy(model, data, split, indices, **kwargs):
        votes = real(model, data, split, indices, **kwargs)
        asked.append((split, list(indices), votes))
        return votes

    monkeypatch.setattr(neighbours, "model_neighbour_votes", spy)
    monkeypatch.setattr(report, "write_report", lambda *a, **k: shown.update(found=a[4]))
    report.report_run(calibrated_run)
    losses = shown["found"]["top_losses"]
    [(split, indices, votes)] = asked
    assert split == losses.split and indices == list(losses.index)
    names = RunDir(calibrated_run).read_json("class_names.json")
    assert votes.shape == (evaluation.TOP_LOSSES, len(names)) and (votes.sum(axis=1) == neighbours.NEIGHBOURS).all()
    for row, notes in enumerate(losses.notes):
        p = names.index(losses.predicted[row])
        expected = (losses.predicted[row] != losses.true[row] and losses.probability[row] >= 0.9
                    and votes[row, p] >= neighbours.NEIGHBOUR_AGREEMENT * neighbours.NEIGHBOURS)
        assert any("suspected wrong label" in n for n in notes) == expected
