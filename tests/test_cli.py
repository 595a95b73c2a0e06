"""The `tlkit` CLI end to end on the `smoke` recipe: run folder, resume, evaluate, predict,
export, and one-line errors with exit codes."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from tlkit import cli
from tlkit.recipes import load_recipe
from tlkit.runner import train
from tlkit.runner.rundir import RunDir

ROOT = os.path.join(os.path.dirname(__file__), "..")
SMOKE = os.path.join(ROOT, "recipes", "smoke.yaml")
FAST = ["--set", "phases.head_epochs=2", "--set", "phases.fine_epochs=2"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "smoke")
    assert cli.main(["train", SMOKE, "--output", out, *FAST]) == 0
    return out


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error line on stderr"
    return err[-1]


@pytest.mark.slow
def test_train_writes_the_run_folder(smoke_run, capsys):
    run = RunDir(smoke_run)
    for name in (
        "recipe.yaml",
        "state.json",
        "history.json",
        "metrics.json",
        "model.keras",
        "class_names.json",
        "reports/model_card.md",
        "reports/confusion_matrix.png",
        "reports/learning_curves.png",
        "reports/classification_report.json",
        "reports/data_audit.txt",
        "checkpoints/head.weights.h5",
        "checkpoints/fine.weights.h5",
    ):
        assert os.path.exists(run.file(name)), name
    assert run.complete
    assert run.class_names() == [str(i) for i in range(10)]
    history = run.history()
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert [r["stage"] for r in history] == ["head", "head", "fine", "fine"]
    assert history[2]["unfrozen"] == 1 and history[3]["unfrozen"] == 2
    metrics = run.read_json("metrics.json")
    assert metrics["split"] == "test" and 0.0 <= metrics["accuracy"] <= 1.0
    assert len(metrics["confusion_matrix"]) == 10
    recipe = run.file("recipe.yaml")
    with open(recipe) as f:
        assert "head_epochs: 2" in f.read()  # the resolved recipe, overrides applied
    card = open(run.file("reports", "model_card.md")).read()
    assert "## Metrics" in card and "## Limitations" in card
    # BackupAndRestore folders are removed once their fit finished.
    assert not os.path.exists(run.backup_dir("fine"))
    model = keras.models.load_model(run.model_path, safe_mode=True, compile=False)
    assert model.output_shape == (None, 10)


@pytest.mark.slow
def test_completed_run_is_not_retrained(smoke_run, capsys):
    before = os.path.getmtime(os.path.join(smoke_run, "model.keras"))
    assert cli.main(["train", SMOKE, "--output", smoke_run, *FAST]) == 0
    assert os.path.getmtime(os.path.join(smoke_run, "model.keras")) == before
    assert f"run: {smoke_run}" in capsys.readouterr().out


@pytest.mark.slow
def test_a_different_recipe_never_overwrites_a_run(smoke_run, capsys):
    code = cli.main(["train", SMOKE, "--output", smoke_run, "--set", "seed=1"])
    assert code == 1
    line = _error_line(capsys)
    assert line.startswith("tlkit: error:") and "different recipe" in line and "--force" in line
    assert RunDir(smoke_run).complete


@pytest.mark.slow
def test_evaluate_rewrites_reports(smoke_run, capsys):
    os.remove(os.path.join(smoke_run, "reports", "confusion_matrix.png"))
    assert cli.main(["evaluate", smoke_run]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "accuracy" in out
    assert os.path.exists(os.path.join(smoke_run, "reports", "confusion_matrix.png"))


@pytest.mark.slow
def test_predict_images_and_json(smoke_run, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    assert cli.main(["predict", smoke_run, str(folder), "--json", "--top", "2"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 3
    for r in results:
        assert r["class"] in [str(i) for i in range(10)]
        assert 0.0 <= r["probability"] <= 1.0 and len(r["top"]) == 2
    assert cli.main(["predict", smoke_run, str(folder / "0.png")]) == 0
    assert capsys.readouterr().out.startswith(str(folder / "0.png"))
    assert cli.main(["predict", smoke_run, str(tmp_path / "nope.png")]) == 1
    assert "input not found" in _error_line(capsys)


@pytest.mark.slow
def test_export_formats_with_parity(smoke_run, tmp_path, capsys):
    out = str(tmp_path / "export")
    code = cli.main(
        ["export", smoke_run, "--format", "tflite", "--format", "savedmodel", "--format", "onnx",
         "--output", out]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "top-1 agreement 1.000" in printed
    with open(os.path.join(out, "export.json")) as f:
        exported = json.load(f)
    assert exported["tflite"]["parity"]["max_abs_diff"] < 1e-4
    assert exported["onnx"]["parity"]["max_abs_diff"] < 1e-4  # on the run's own inputs
    assert os.path.exists(os.path.join(out, "savedmodel", "saved_model.pb"))


@pytest.mark.slow
def test_export_full_integer_tflite_calibrates_on_the_runs_training_data(smoke_run, tmp_path):
    out = str(tmp_path / "export")
    assert cli.main(["export", smoke_run, "--format", "tflite-int8", "--output", out]) == 0
    with open(os.path.join(out, "export.json")) as f:
        record = json.load(f)["tflite-int8"]
    assert os.path.exists(record["path"])
    assert 0.0 <= record["parity"]["top1_agreement"] <= 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "missing.yaml"], "recipe not found: missing.yaml"),
        (
            ["train", SMOKE, "--set", "optimiser.lr=1"],
            "unknown key 'optimiser' at top level; did you mean 'optimizer'?",
        ),
        (
            ["train", SMOKE, "--set", "data.splits.val_fraction=2"],
            "data.splits.val_fraction: expected a float in [0, 1), got 2",
        ),
        (["evaluate", "no/such/run"], "run folder not found"),
        (["tune", SMOKE, "--set", "tune=null"], "no 'tune' section"),
        (["audit", "no/such/folder"], "data not found"),
        (["bench", "--dir", "no/such/dir"], "no benchmark scripts"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_1(argv, message, capsys):
    assert cli.main(argv) == 1
    line = _error_line(capsys)
    assert line.startswith("tlkit: error: ")
    assert message in line


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_tune_runs_a_search(tmp_path, capsys):
    code = cli.main(
        [
            "tune",
            SMOKE,
            "--output",
            str(tmp_path),
            "--set",
            "phases.head_epochs=1",
            "--set",
            "phases.fine_epochs=1",
            "--set",
            "tune.max_trials=2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "best: {" in out and "recipe: " in out
    assert os.path.exists(tmp_path / "tune")


def test_debug_shows_the_traceback():
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "train", "missing.yaml"])


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["export", "somewhere", "--format", "pdf"])
    assert info.value.code == 2


def test_audit_a_recipes_data(capsys):
    assert cli.main(["audit", SMOKE]) == 0
    assert "imbalance" in capsys.readouterr().out


def test_audit_an_image_folder(tmp_path, capsys):
    from tlkit.data import make_image_folder

    folder = make_image_folder(tmp_path / "shapes", per_class=3, image_size=(8, 8))
    assert cli.main(["audit", folder, "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), dict)


def test_bench_lists_scripts(tmp_path, capsys):
    (tmp_path / "hello.py").write_text("print('hello bench')\n")
    assert cli.main(["bench", "--dir", str(tmp_path), "--list"]) == 0
    assert capsys.readouterr().out.split() == ["hello"]
    assert cli.main(["bench", "--dir", str(tmp_path)]) == 0


def test_bench_finds_the_checkouts_benchmarks_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--list"]) == 0
    assert "lr_choice" in capsys.readouterr().out.split()


@pytest.mark.slow
def test_entry_point_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: {name: tiny}\nphases: {schedule: sometimes}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tlkit.cli", "train", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("tlkit: error: ")
        and "phases.schedule: expected one of 'gradual'" in proc.stderr
    )


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupted_run_resumes(tmp_path, monkeypatch):
    out = str(tmp_path / "resume")
    recipe = load_recipe(
        SMOKE, overrides=["phases.head_epochs=2", "phases.fine_epochs=3", "seed=3"]
    )
    original = train._callbacks

    def interrupting(recipe, run, stage, offset, segments):
        callbacks = original(recipe, run, stage, offset, segments)
        return callbacks + [_Interrupt()] if stage == "fine" else callbacks

    monkeypatch.setattr(train, "_callbacks", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train.train_recipe(recipe, output=out, verbose=0)
    run = RunDir(out)
    assert run.state["stages_done"] == ["head"] and not run.complete
    assert os.path.exists(os.path.join(run.backup_dir("fine"), "training_metadata.json"))
    head_records = [r for r in run.history() if r["stage"] == "head"]

    monkeypatch.setattr(train, "_callbacks", original)
    assert train.train_recipe(recipe, output=out, verbose=0) == out
    assert run.complete
    history = run.history()
    assert [r["epoch"] for r in history] == [0, 1, 2, 3, 4]
    assert [r for r in history if r["stage"] == "head"] == head_records  # not retrained


@pytest.mark.slow
def test_text_recipe_with_slices_and_string_serving(tmp_path, capsys):
    rng = np.random.default_rng(0)
    words = {"pos": ["great", "good", "fine", "happy"], "neg": ["bad", "awful", "sad", "poor"]}
    texts, labels = [], []
    for i in range(120):
        label = i % 2
        pool = words["pos" if label else "neg"]
        texts.append(" ".join(rng.choice(pool, 3)) + " day")
        labels.append(label)
    source = np.array(["web" if i % 3 else "mail" for i in range(120)])
    npz = tmp_path / "texts.npz"
    np.savez(npz, x=np.array(texts), y=np.array(labels), meta_source=source)
    recipe = tmp_path / "text.yaml"
    recipe.write_text(
        "backbone: {name: tiny_text}\n"
        f"data: {{source: numpy, path: '{npz}', kind: text, class_names: [neg, pos],\n"
        "       slice_by: source, splits: {val_fraction: 0.2, test_fraction: 0.25},\n"
        "       allow_leakage: true}\n"  # 3-word texts from 4 words repeat across splits
        "phases: {head_epochs: 2, fine_epochs: 1, schedule: all}\n"
        "output: {export: [keras, savedmodel, tflite]}\n"
    )
    out = str(tmp_path / "run")
    assert cli.main(["train", str(recipe), "--output", out]) == 0
    run = RunDir(out)
    metrics = run.read_json("metrics.json")
    assert set(metrics["slices"]["slices"]) == {"web", "mail"}
    assert "### By `source`" in open(run.file("reports", "model_card.md")).read()
    exported = json.load(open(run.file("export", "export.json")))
    assert "skipped" in exported["tflite"]  # string ops: not a TFLite builtin
    import tensorflow as tf

    served = tf.saved_model.load(run.file("export", "savedmodel"))
    out_names = served.serve(tf.constant(["great good day"]))["class_name"].numpy()
    assert out_names[0].decode() in ("neg", "pos")
    capsys.readouterr()
    assert cli.main(["predict", out, "great good day", "bad awful day", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["input"] for r in results] == ["great good day", "bad awful day"]


def test_lr_find(tmp_path, capsys):
    code = cli.main(["lr-find", SMOKE, "--output", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "suggested learning rate" in out
    assert f"plot: {tmp_path / 'lr_find.png'}" in out
    assert "--set optimizer.lr=" in out
    assert os.path.exists(tmp_path / "lr_find.png")


def test_cli_leaves_logging_as_it_found_it():
    import logging

    logger = logging.getLogger("tlkit")
    before = (list(logger.handlers), logger.level, logger.propagate)
    assert cli.main(["train", "does/not/exist.yaml"]) == 1
    assert (list(logger.handlers), logger.level, logger.propagate) == before


@pytest.mark.slow
def test_evaluate_tta_writes_its_metrics_beside_the_plain_ones(smoke_run, capsys):
    with open(os.path.join(smoke_run, "metrics.json")) as f:
        plain = json.load(f)
    assert cli.main(["evaluate", smoke_run, "--tta", "--tta-crops", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "with test-time augmentation (7 views): accuracy" in out
    with open(os.path.join(smoke_run, "metrics_tta.json")) as f:
        tta = json.load(f)
    assert tta["views"] == 7 and tta["crops"] == 0.9 and tta["split"] == plain["split"]
    assert 0.0 <= tta["accuracy"] <= 1.0 and tta["num_examples"] == plain["num_examples"]
    with open(os.path.join(smoke_run, "metrics.json")) as f:
        after = json.load(f)
    # The plain metrics are not overwritten by the TTA ones.
    assert after["accuracy"] == plain["accuracy"] == tta["without_tta"]["accuracy"]
    assert "tta" not in after
    assert cli.main(["evaluate", smoke_run, "--tta-crops", "1.5"]) == 1
    assert _error_line(capsys) == "tlkit: error: --tta-crops: expected a fraction in (0, 1), got 1.5"


def test_suggest_writes_csv_and_contact_sheet(smoke_run, tmp_path, capsys):
    import csv

    rng = np.random.default_rng(0)
    pool = tmp_path / "pool"
    pool.mkdir()
    for k in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(pool / f"{k}.png")
    (pool / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "picks"
    code = cli.main(["suggest", smoke_run, "--pool", str(pool), "-n", "3", "--method",
                     "kcenter", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    with open(out / "to_label.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["path"].startswith(str(pool)) for r in rows)
    assert len({r["path"] for r in rows}) == 3 and not any("broken" in r["path"] for r in rows)
    assert all("farthest" in r["why"] for r in rows)
    assert Image.open(out / "to_label.png").size[0] > 100
    assert "3 file(s) to label next (kcenter)" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert cli.main(["suggest", smoke_run, "--pool", str(tmp_path / "empty")]) == 1
    line = _error_line(capsys)
    assert line.startswith("tlkit: error: --pool: no image files") and "empty" in line
