"""The three-line start: build_model(backbone, data), fine_tune(model, data), tlkit.predict."""

import numpy as np
import pytest

import tlkit
from tlkit.testing import tiny_cnn


def _data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    x = rng.uniform(0, 255, (36, 16, 16, 3)).astype("float32")
    x[..., 0] += 40.0 * y[:, None, None]  # learnable signal
    x = np.clip(x, 0, 255)
    return tlkit.data.from_numpy(x, y, class_names=["ant", "bee", "cat"],
                                 val_fraction=0.25, test_fraction=0.25)


def _backbone():
    from tlkit.backbones import InputInfo, from_keras

    return from_keras(tiny_cnn((16, 16, 3)), input_info=InputInfo(value_range=(-1, 1)))


def test_build_model_takes_class_names_and_input_shape_from_data():
    data = _data()
    model = tlkit.build_model(_backbone(), data)
    head = tlkit.heads.find_head(model)
    assert head.class_names == ["ant", "bee", "cat"]
    assert tuple(model.inputs[0].shape[1:]) == (16, 16, 3)
    assert model.output_shape == (None, 3)


def test_build_model_rejects_non_labeled_data():
    with pytest.raises(TypeError, match="LabeledData"):
        tlkit.build_model(_backbone(), data=[1, 2, 3])


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_fine_tune_on_labeled_data_evaluates_the_test_split():
    data = _data()
    model = tlkit.build_model(_backbone(), data)
    result = tlkit.fine_tune(model, data, epochs=(1, 1), batch_size=8, verbose=0)
    assert set(result.test_metrics) >= {"loss", "accuracy"}
    expected = model.evaluate(data.pipeline("test", 8), verbose=0, return_dict=True)
    assert result.test_metrics["accuracy"] == pytest.approx(float(expected["accuracy"]))
    assert "val_loss" in result.history.history  # the val split was used for validation


def test_batch_size_defaults_to_the_plan_in_the_short_path_and_recipes(monkeypatch):
    """No batch size given: `fine_tune(model, data)` and a recipe without `data.batch_size`
    both take `tlkit.distribute.distribution_plan`'s default (one table, patched here)."""
    import keras
    import tensorflow as tf

    from tlkit import distribute
    from tlkit.recipes import Recipe
    from tlkit.runner.settings import resolve_batch

    for device in ("cpu", "gpu"):
        monkeypatch.setitem(distribute.DEFAULT_PER_REPLICA_BATCH, device, 5)
    steps = []

    class Steps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            steps.append(self.params["steps"])

    data = _data()
    model = tlkit.build_model(_backbone(), data)
    tlkit.fine_tune(model, data, epochs=(1, 0), callbacks=[Steps()], verbose=0)
    assert steps == [-(-data.num_examples("train") // 5)], steps
    strategy = tf.distribute.get_strategy()
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}})
    assert recipe.data.batch_size is None
    assert resolve_batch(recipe, strategy).data.batch_size == 5
    given = Recipe.from_dict({"backbone": {"name": "tiny"}, "data": {"batch_size": 64}})
    assert resolve_batch(given, strategy).data.batch_size == 64


def test_fine_tune_on_datasets_has_no_test_metrics():
    data = _data()
    model = tlkit.build_model(_backbone(), data)
    result = tlkit.fine_tune(model, data.pipeline("train", 8), epochs=(1, 0), verbose=0)
    assert result.test_metrics is None


def test_predict_takes_paths_pil_images_and_arrays_alike(tmp_path):
    from PIL import Image

    data = _data()
    model = tlkit.build_model(_backbone(), data)
    image = np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype="uint8")
    Image.fromarray(image).save(tmp_path / "a.png")
    by_path = tlkit.predict(model, str(tmp_path / "a.png"), top=2)
    by_pil = tlkit.predict(model, [Image.fromarray(image)])
    by_array = tlkit.predict(model, image.astype("float32"))
    assert by_path[0]["class"] in data.class_names and len(by_path[0]["top"]) == 2
    for other in (by_pil, by_array):
        assert other[0]["class"] == by_path[0]["class"]
        assert other[0]["probability"] == pytest.approx(by_path[0]["probability"], abs=1e-5)
    # A larger grey PIL image is resized and repeated to RGB.
    grey = Image.fromarray(image[..., 0]).resize((32, 32))
    assert tlkit.predict(model, grey)[0]["class"] in data.class_names


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_load_a_run_folder_applies_its_temperature_and_keeps_class_names(tmp_path):
    import json

    data = _data()
    model = tlkit.build_model(_backbone(), data)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    x = np.random.default_rng(2).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    plain = tlkit.load(run)
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    (run / "calibration.json").write_text(json.dumps({"temperature": 2.0}))
    calibrated = tlkit.load(run)
    expected = tlkit.reports.apply_temperature(model.predict(x, verbose=0), 2.0)
    np.testing.assert_allclose(calibrated.predict(x, verbose=0), expected, atol=1e-5)
    assert tlkit.predict(calibrated, x[0])[0]["class"] in data.class_names
    with pytest.raises(FileNotFoundError, match="model.keras"):
        tlkit.load(tmp_path)


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_show_batch_draws_the_first_images_with_their_class_names():
    data = _data()
    fig = data.show_batch(n=4, columns=2)
    _, y = data.take("train", 4)
    assert _titles(fig) == [data.class_names[i] for i in y]
    assert sum(bool(ax.images) for ax in fig.axes) == 4


def test_show_batch_refuses_text_data():
    text = tlkit.data.from_numpy(np.array(["a b", "c d", "e f", "g h"]), np.array([0, 1, 0, 1]),
                                 val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(ValueError, match="show_batch draws images"):
        text.show_batch()


def test_show_results_titles_true_and_predicted_classes_coloured_by_correctness():
    data = _data()
    model = tlkit.build_model(_backbone(), data)
    fig = tlkit.reports.show_results(model, data, n=5)
    x, y = data.take("test", 5)
    predicted = model.predict(x, verbose=0).argmax(-1)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == 5
    for ax, t, p in zip(axes, y, predicted):
        assert ax.get_title().startswith(f"true {data.class_names[t]}\npred {data.class_names[p]}")
        assert ax.title.get_color() == ("tab:green" if t == p else "tab:red")


def test_reloading_a_model_raises_no_build_warning(tmp_path):
    import warnings

    from tlkit.backbones import InputInfo, from_keras

    backbone = from_keras(tiny_cnn((16, 16, 3)),
                          input_info=InputInfo(value_range=(-1, 1), image_size=(16, 16)))
    model = tlkit.build_model(backbone, _data())  # a resizing step inside the preprocessing
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tlkit.load(tmp_path / "m.keras")
    assert not [w for w in caught if "build()" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_unfreezing_prints_one_line_and_logs_the_table_at_debug(capsys, caplog):
    import logging

    data = _data()
    model = tlkit.build_model(_backbone(), data)
    with caplog.at_level(logging.DEBUG, logger="tlkit"):
        tlkit.fine_tune(model, data, epochs=(1, 1), batch_size=8, verbose=1)
    printed = [line for line in capsys.readouterr().out.splitlines() if "group" in line]
    assert not [line for line in printed if line.startswith("group ")], printed
    assert any("trainable parameters per group" in r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG)


def test_cli_verbose_shows_debug_lines_and_restores_logging():
    import logging

    from tlkit import cli

    logger = logging.getLogger("tlkit")
    before = logger.level
    # The logger lets DEBUG through (for a run's train.log); the console handler filters.
    with cli._cli_logging(quiet=False, verbose=True):
        assert logger.isEnabledFor(logging.DEBUG) and logger.handlers[0].level == logging.DEBUG
    with cli._cli_logging(quiet=False):
        assert [h.level for h in logger.handlers] == [logging.INFO]
    with cli._cli_logging(quiet=True):
        assert [h.level for h in logger.handlers] == [logging.WARNING]
    assert logger.level == before
    assert cli.build_parser().parse_args(["--verbose", "list"]).verbose


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_summary_lines_count_the_epochs_that_ran(caplog):
    import logging

    data = _data()
    model = tlkit.build_model(_backbone(), data)
    with caplog.at_level(logging.INFO, logger="tlkit"):
        tlkit.train_head_on_features(model, data.train, data.val, epochs=3, verbose=0)
        tlkit.fine_tune(model, data.pipeline("train", 8), epochs=(0, 2), verbose=0)
    messages = [r.getMessage() for r in caplog.records]
    assert any("3 head epochs ran" in m for m in messages), messages
    assert any(m.startswith("fine_tune: 2 epochs ran (0 head + 2 fine)") for m in messages), messages


@pytest.mark.slow
def test_train_logs_the_pretrained_result_before_the_scratch_comparison(
    tmp_path, capsys, monkeypatch
):
    """The pretrained run's result, model, exports and reports exist before the from-scratch
    baseline starts; its result is merged into metrics.json and the card afterwards."""
    import json
    import os

    from tlkit import cli
    from tlkit.runner import train

    run_dir = tmp_path / "run"
    seen = {}

    def fake_baseline(recipe, run, data, verbose="auto"):
        seen["files"] = {name: (run_dir / name).exists() for name in (
            "metrics.json", "model.keras", "reports/model_card.md", "report.html",
            "export/export.json")}
        seen["metrics"] = json.loads((run_dir / "metrics.json").read_text())
        return {"accuracy": 0.125, "split": "test", "epochs": 1, "seconds": 3.0}

    monkeypatch.setattr(train, "scratch_baseline", fake_baseline)
    smoke = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "smoke.yaml")
    assert cli.main(["train", smoke, "--output", str(run_dir), "--set",
                     "phases.head_epochs=1", "--set", "phases.fine_epochs=1", "--set",
                     "compare.scratch_epochs=1", "--set", "output.export=[keras,savedmodel]"]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    first = [line for line in err if line.startswith("pretrained backbone: test accuracy")]
    assert first and "compare.scratch_epochs: 0 skips it" in first[0], err
    assert all(seen["files"].values()), seen["files"]
    assert "scratch" not in seen["metrics"] and "accuracy" in seen["metrics"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"{metrics['accuracy']:.4f}" in first[0]
    assert metrics["scratch"]["accuracy"] == 0.125
    card = (run_dir / "reports" / "model_card.md").read_text()
    assert "trained from scratch on the same data: accuracy 0.1250" in card
