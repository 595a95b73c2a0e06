"""Commands on a finished run merge into its records; --force keeps the old run until the new one
has a checkpoint; leaked splits and bad CSV rows are refused with the fix named."""

import json
import os
import shutil

import pytest

import tlkit
from tlkit import cli
from tlkit.runner.rundir import RunDir

pytestmark = pytest.mark.slow

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SMOKE = os.path.join(ROOT, "recipes", "smoke.yaml")
# The settings of the session's smoke run (tests/conftest.py SMOKE_FAST): a retrain with them
# is the same recipe.
FAST = ["--set", "phases.head_epochs=1", "--set", "phases.fine_epochs=1",
        "--set", "output.tensorboard=false"]


@pytest.fixture
def smoke_run(tmp_path, copy_smoke_run):
    """A copy of the session's finished smoke run (tests/conftest.py: trained with `FAST`)."""
    return RunDir(copy_smoke_run(tmp_path / "smoke"))


def _card(run):
    with open(run.file("reports", "model_card.md")) as f:
        return f.read()


def test_evaluate_and_export_keep_the_runs_records(smoke_run, capsys):
    run = smoke_run
    # A run trained with `compare.scratch_epochs` has this record (as train_recipe writes it).
    scratch = {"accuracy": 0.25, "split": "test", "epochs": 3, "seconds": 7.0}
    run.write_json("metrics.json", {**run.read_json("metrics.json"), "scratch": scratch})
    assert cli.main(["-q", "export", run.path, "--format", "tflite"]) == 0
    assert cli.main(["-q", "export", run.path, "--format", "savedmodel"]) == 0
    exported = run.read_json("export/export.json")
    assert set(exported) == {"tflite", "savedmodel"}  # the first export's record is kept
    assert exported["tflite"]["parity"]["top1_agreement"] == 1.0
    card = _card(run)
    assert "- tflite: `" in card and "- savedmodel: `" in card and "- keras: `" in card

    assert cli.main(["-q", "evaluate", run.path]) == 0
    card = _card(run)
    assert "trained from scratch on the same data: accuracy 0.2500" in card
    assert "## Files" in card and "- tflite: `" in card and "- savedmodel: `" in card
    metrics = run.read_json("metrics.json")
    assert metrics["scratch"] == scratch and "train_seconds" in metrics


def test_force_replaces_a_run_only_once_the_new_one_has_a_checkpoint(smoke_run, tmp_path):
    run = smoke_run
    old_model = open(run.model_path, "rb").read()
    # Fails while loading its data (after the preflight): the old run comes back whole.
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello, world,pos\nfine,neg\n")
    code = cli.main(["-q", "train", SMOKE, "--output", run.path, "--force",
                     "--set", "data.source=csv", "--set", f"data.path={bad}",
                     "--set", "data.x_col=text", "--set", "data.y_col=label"])
    assert code == 1
    assert run.complete and open(run.model_path, "rb").read() == old_model
    assert sorted(os.listdir(tmp_path)) == ["bad.csv", "smoke"]  # nothing left aside
    # Succeeds: replaced, and the old run is gone.
    assert cli.main(["-q", "train", SMOKE, "--output", run.path, "--force", *FAST,
                     "--set", "seed=5"]) == 0
    assert run.complete and "seed: 5" in open(run.recipe_path).read()
    assert sorted(os.listdir(tmp_path)) == ["bad.csv", "smoke"]


def test_a_rerun_after_a_failed_first_attempt_starts_again(tmp_path, capsys):
    images = tmp_path / "images"
    tlkit.data.make_image_folder(images, per_class=4, splits=("train", "val"))
    leaked = next((images / "train" / "circle").iterdir())
    shutil.copy(leaked, images / "val" / "circle" / "copy_of_train.png")
    recipe = tmp_path / "leaky.yaml"
    recipe.write_text(
        "backbone: {name: tiny}\n"
        f"data: {{source: folder, path: '{images}', batch_size: 4,\n"
        "       splits: {train: train, val: val}}\n"
        "phases: {head_epochs: 1, fine_epochs: 0}\n"
        "output: {tensorboard: false}\n"
    )
    out = str(tmp_path / "run")
    assert cli.main(["-q", "train", str(recipe), "--output", out]) == 1
    line = capsys.readouterr().err.strip()
    assert "copy_of_train" in line and "set data.allow_leakage: true" in line
    assert "allow=True" not in line
    run = RunDir(out)
    assert run.failed.startswith("DataLeakageError") and not run.complete
    assert os.path.exists(run.file("reports", "data_audit.txt"))  # the audit is kept
    assert cli.main(["-q", "train", str(recipe), "--output", out,
                     "--set", "data.allow_leakage=true"]) == 0  # not "a different recipe"
    assert run.complete and run.failed is None


def test_from_csv_never_turns_a_malformed_row_into_data(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\ngood,pos\nbad,neg\nhello, world,pos\nfine,neg\nok,pos\n")
    with pytest.raises(ValueError, match=r"row 3 \(line 4\): has 1 more field"):
        tlkit.data.from_csv(path, "text", "label", kind="text")
    data = tlkit.data.from_csv(path, "text", "label", kind="text", on_bad_rows="skip",
                               val_fraction=0.0, test_fraction=0.0)
    assert data.class_names == ["neg", "pos"]  # no class " world"
    assert data.num_examples("train") == 4
    assert [s.reason for s in data.skipped] == [
        "has 1 more field(s) than the header (quote values that contain the delimiter)"
    ]
    assert "row 3" in data.skipped[0].source


def test_from_numpy_errors_print_plain_values():
    import numpy as np

    with pytest.raises(ValueError) as info:
        tlkit.data.from_numpy(np.zeros((3, 2), "float32"), np.array([0.0, np.nan, 1.0]))
    assert "y[1] = nan is not" in str(info.value) and "np.float64" not in str(info.value)


def test_export_json_records_survive_a_library_export(tmp_path):
    from tlkit.testing import tiny_model

    model = tiny_model()
    tlkit.export.export_model(model, tmp_path, ["keras"])
    tlkit.export.export_model(model, tmp_path, ["savedmodel"])
    with open(tmp_path / "export.json") as f:
        assert set(json.load(f)) == {"keras", "savedmodel"}


def test_metrics_and_card_say_what_the_run_did(smoke_run):
    """metrics.json: versions, timings per phase, the final validation score, labelled confusion
    matrix axes (old keys kept); the card: input, batch size, LR schedule per phase, seed."""
    import platform

    import keras
    import tensorflow as tf

    metrics = smoke_run.read_json("metrics.json")
    versions = metrics["versions"]
    assert versions["tlkit"] == tlkit.__version__ and versions["tensorflow"] == tf.__version__
    assert versions["keras"] == keras.__version__
    assert versions["python"] == platform.python_version() and "keras_hub" in versions
    assert set(metrics["timings"]) == {"head", "fine", "evaluation", "export"}
    assert all(v >= 0 for v in metrics["timings"].values())
    history = smoke_run.history()
    assert metrics["final_validation"]["epoch"] == len(history) == 2
    assert metrics["final_validation"]["accuracy"] == pytest.approx(history[-1]["val_accuracy"])
    classes = smoke_run.class_names()
    assert metrics["confusion_matrix_axes"] == {
        "rows": "true class", "columns": "predicted class", "labels": classes}
    assert len(metrics["confusion_matrix"]) == len(classes)  # the old key, as before
    card = _card(smoke_run)
    for line in (
        "- Input: 8x8x1 pixels in [0, 255] (at the data's size, 3 channels, scaled to [0, 1]",
        "- Batch size: 64",
        "- Optimizer: adam",
        "- Learning rate, head phase: constant 0.03 for 1 epoch",
        "- Learning rate, fine-tuning: cosine 0.001 -> 1e-05 over 1 epoch",
        "- BatchNorm: frozen",
        "- Seed: 0",
        "- epoch 2: top 1 group + head, BN frozen",
        "- Time: head phase ",
        f"- Versions: tlkit {tlkit.__version__}, TensorFlow {tf.__version__}",
        "- Validation accuracy at the last epoch (2): ",
    ):
        assert line in card, (line, card)
    assert "(lr " not in card  # no single LR for a scheduled phase
