"""Your own photos on the first try (#29): the README's three lines, `tlkit train` and every verb
after it on an image folder of every size, mode and format, built here with PIL.

The backbone is the registry's `tiny` (a SavedModel written on the fly); given an `InputInfo`
with an image size it stands for a pretrained backbone such as EfficientNet-Lite0 (224 px), and
without one for a backbone that takes any size.
"""

import os

import numpy as np
import pytest
import yaml

import tlkit
from tlkit import cli
from tlkit.backbones import InputInfo

CLASSES = ("cat", "dog", "fox")
SIZE = 32  # the stand-in backbone's input size


def photo_folder(root, per_class=6, seed=0):
    """`root/<class>/<k>.{jpg,png}`: sizes 24-120 px, no two alike; per class a greyscale
    JPEG (`1.jpg`) and a palette PNG (`2.png`); one RGBA PNG (`cat/3.png`). Class `c` is
    brightest in channel `c`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for k in range(per_class):
            height, width = rng.integers(24, 121, 2)
            pixels = rng.integers(0, 90, (height, width, 3))
            pixels[..., c] += 150
            image = Image.fromarray(pixels.clip(0, 255).astype("uint8"))
            if k == 1:
                image = image.convert("L")
            elif k == 2:
                image = image.convert("P")
            elif k == 3 and c == 0:
                image = image.convert("RGBA")
            ext = "png" if k in (2, 3, 5) else "jpg"  # 1.jpg: a greyscale JPEG
            image.save(os.path.join(root, name, f"{k}.{ext}"))
    return str(root)


def _sizes(folder):
    from PIL import Image

    sizes, modes = set(), set()
    for name in CLASSES:
        for f in os.listdir(os.path.join(folder, name)):
            with Image.open(os.path.join(folder, name, f)) as im:
                sizes.add(im.size)
                modes.add(im.mode)
    return sizes, modes


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = photo_folder(tmp_path_factory.mktemp("own") / "photos")
    sizes, modes = _sizes(folder)
    assert len(sizes) == 6 * len(CLASSES) and {"RGB", "L", "P", "RGBA"} <= modes
    return folder


def _backbone(tmp_path, image_size=(SIZE, SIZE)):
    info = InputInfo(image_size=image_size, value_range=(0, 1))
    return tlkit.backbones.get("tiny", folder=str(tmp_path / "tiny"), input_info=info)


# -- the three lines ---------------------------------------------------------------------------
def test_three_lines_on_photos_of_every_size(photos, tmp_path, capsys):
    data = tlkit.data.from_image_folder(photos)
    assert data.input_shape == (None, None, 3)  # no common size
    assert set(data.splits) == {"train", "val", "test"}  # the default split holds out a test set
    model = tlkit.build_model(_backbone(tmp_path), data)
    result = tlkit.fine_tune(model, data)

    assert data.for_model(model).input_shape == (SIZE, SIZE, 3)  # the backbone decided
    assert 0.0 <= result.test_metrics["accuracy"] <= 1.0
    assert 0.0 <= result.val_metrics["accuracy"] <= 1.0
    printed = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("fine_tune:")]
    assert printed == [result.outcome()]
    assert f"strategy {result.strategy['strategy']}" in printed[0]
    assert "validation accuracy" in printed[0] and "test accuracy" in printed[0]
    # The trained model predicts files of any size, and the data shows its first images.
    paths = [os.path.join(photos, "cat", f) for f in ("0.jpg", "1.jpg", "3.png")]
    assert [r["input"] for r in tlkit.predict(model, paths)] == paths
    titles = [ax.get_title() for ax in data.show_batch(n=4).axes if ax.get_title()]
    assert len(titles) == 4 and set(titles) <= set(CLASSES)


def test_one_clear_error_when_nothing_decides_the_size(photos, tmp_path):
    data = tlkit.data.from_image_folder(photos)
    model = tlkit.build_model(_backbone(tmp_path, image_size=None), data)  # takes any size
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError) as error:
        tlkit.fine_tune(model, data, verbose=0)
    message = str(error.value)
    assert "\n" not in message and photos in message
    assert "18 different sizes" in message
    assert "pass `image_size=(height, width)`" in message.lower()
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))  # no work


def test_one_default_split_for_python_and_recipes():
    import inspect

    from tlkit import config
    from tlkit.recipes import Recipe

    splits = Recipe.from_dict({"backbone": {"name": "tiny"}}).data.splits
    assert (splits.val_fraction, splits.test_fraction) == (config.VAL_FRACTION,
                                                           config.TEST_FRACTION)
    for loader in (tlkit.data.from_image_folder, tlkit.data.from_csv, tlkit.data.from_numpy,
                   tlkit.data.from_text_files):
        params = inspect.signature(loader).parameters
        assert params["val_fraction"].default == config.VAL_FRACTION, loader
        assert params["test_fraction"].default == config.TEST_FRACTION, loader


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_no_shuffle_warning_and_verbose_0_prints_nothing(monkeypatch, capsys):
    """Keras warns when `shuffle=True` comes with a tf.data.Dataset; no fit in fine_tune passes
    it (the surgical group search did). `verbose=0` silences the outcome line."""
    import warnings

    from tlkit.testing import tiny_cnn
    from tlkit.training.strategies import surgical

    monkeypatch.setattr(surgical, "CANDIDATES", 1)  # one trial is enough here
    monkeypatch.setattr(surgical, "TRIAL_STEPS", 1)

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    x = np.clip(rng.uniform(0, 200, (24, 16, 16, 3)) + 50.0 * y[:, None, None, None], 0, 255)
    data = tlkit.data.from_numpy(x.astype("float32"), y)
    backbone = tlkit.backbones.from_keras(tiny_cnn((16, 16, 3)))
    model = tlkit.build_model(backbone, data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tlkit.fine_tune(model, data, strategy="surgical", surgical_group="auto",
                                 epochs=(0, 1), verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]
    assert capsys.readouterr().out == ""
    assert set(result.val_metrics) >= {"loss", "accuracy"} and result.test_metrics


# -- the CLI: train, then every verb on a recipe that leaves every optional key unset -----------
def _recipe(tmp, folder, **extra):
    recipe = {"backbone": {"name": "tiny", "input_info": {"image_size": [SIZE, SIZE]}},
              "data": {"source": "folder", "path": folder}, **extra}
    path = tmp / f"{'_'.join(extra) or 'plain'}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory):
    """One `tlkit train` of a recipe with only `backbone.name` (+ the stand-in's input size)
    and `data: {source: folder, path}`: no image size, batch size, splits or phases."""
    tmp = tmp_path_factory.mktemp("verbs")
    recipe = _recipe(tmp, photos)
    run = str(tmp / "run")
    assert cli.main(["train", recipe, "--output", run]) == 0
    return {"recipe": recipe, "run": run, "tmp": tmp, "photos": photos}


@pytest.mark.slow
def test_train_uses_the_backbones_size(trained):
    with open(os.path.join(trained["run"], "reports", "model_card.md"), encoding="utf-8") as f:
        card = f.read()
    assert f"resized to {SIZE}x{SIZE} px" in card
    assert os.path.exists(os.path.join(trained["run"], "report.html"))


@pytest.mark.slow
def test_evaluate(trained, capsys):
    assert cli.main(["evaluate", trained["run"]]) == 0  # TypeError on batch_size=None before
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_report(trained):
    html = os.path.join(trained["run"], "report.html")
    os.remove(html)
    assert cli.main(["report", trained["run"]]) == 0
    assert os.path.getsize(html) > 0


@pytest.mark.slow
def test_export_tflite_at_the_backbones_size(trained, capsys):
    assert cli.main(["export", trained["run"], "--format", "tflite"]) == 0
    assert "top-1 agreement" in capsys.readouterr().out
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(os.path.join(trained["run"], "export", "model.tflite"))
    assert list(interpreter.get_input_details()[0]["shape"][1:]) == [SIZE, SIZE, 3]


@pytest.mark.slow
def test_predict(trained, capsys):
    paths = [os.path.join(trained["photos"], name, "1.jpg") for name in CLASSES]
    assert cli.main(["predict", trained["run"], *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == paths
    assert all(line.split("\t")[1].split()[0] in CLASSES for line in lines)


def _batches(ds):
    return [(tuple(x.shape), int(len(y))) for x, y in ds.as_numpy_iterator()]


def _resolved_batches(train_examples=12):
    """What a resolved recipe batches: the plan's batch size (here 32: one batch of all 12
    training images) at the backbone's size."""
    return [((train_examples, SIZE, SIZE, 3), train_examples)]


@pytest.mark.slow
def test_lr_find(trained, monkeypatch, capsys):
    """The verb up to the range test (its sweep is `tests/optimizers/test_lr_tools.py`'s): the model and
    the batches it would sweep over."""
    import types

    from tlkit.runner import lr_find as lr_find_lib

    seen = {}

    def fake_lr_find(model, train, plot_path=None, verbose=0):
        seen.update(batches=_batches(train), model=model)
        return types.SimpleNamespace(suggestion=1e-3, plot_path=plot_path)

    monkeypatch.setattr(lr_find_lib, "lr_find", fake_lr_find)
    out = str(trained["tmp"] / "lr")
    assert cli.main(["lr-find", trained["recipe"], "--output", out]) == 0
    assert seen["batches"] == _resolved_batches()
    assert "suggested learning rate" in capsys.readouterr().out


@pytest.mark.slow
def test_tune(trained, monkeypatch):
    """The verb up to the search (searches are `tests/tuning/test_tuning.py`'s): the batches and the
    model every trial gets."""
    import types

    from tlkit.runner import tune as tune_lib

    seen = {}

    def fake_tune(build, train, val, space, **kwargs):
        seen.update(train=_batches(train), val=_batches(val), model=build(0.1))
        return types.SimpleNamespace(best_recipe=None)

    monkeypatch.setattr(tune_lib, "tune", fake_tune)
    space = {"optimizer.lr": {"min": 1.0e-4, "max": 1.0e-2, "log": True}}
    recipe = _recipe(trained["tmp"], trained["photos"], tune={"max_trials": 1, "space": space})
    tune_lib.tune_recipe(recipe, output=str(trained["tmp"] / "tune"))
    assert seen["train"] == _resolved_batches()
    assert seen["val"] == [((3, SIZE, SIZE, 3), 3)]
    assert seen["model"].output_shape == (None, len(CLASSES))


def test_train_says_what_to_set_when_nothing_decides_the_size(photos, tmp_path, capsys):
    recipe = tmp_path / "any_size.yaml"
    recipe.write_text(yaml.safe_dump({"backbone": {"name": "tiny"},
                                      "data": {"source": "folder", "path": photos}}))
    assert cli.main(["train", str(recipe), "--output", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("tlkit: error:")]
    assert len(error_lines) == 1 and "data.image_size" in error_lines[0]
    assert "Traceback" not in err


# -- messages ------------------------------------------------------------------------------------
def test_errors_that_need_no_tensorflow_do_not_import_it(tmp_path):
    """`run folder not found` and a missing data path answer before TensorFlow loads (they took
    6-8 s; recipe-key errors 0.2 s)."""
    import subprocess
    import sys

    recipe = tmp_path / "nodata.yaml"
    recipe.write_text("backbone: {name: tiny}\ndata: {source: folder, path: /no/such/folder}\n")
    nope = str(tmp_path / "nope")
    commands = [["evaluate", nope], ["report", nope], ["predict", nope, "x.png"],
                ["export", nope, "--format", "tflite"], ["train", str(recipe)],
                ["lr-find", str(recipe)]]
    code = ("import json, sys\nfrom tlkit import cli\n"
            f"codes = [cli.main(argv) for argv in {commands!r}]\n"
            "print(json.dumps([codes, 'tensorflow' in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))})
    assert out.stdout.strip().splitlines()[-1] == f"[{[1] * len(commands)}, false]", out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("tlkit: error:")]
    assert errors[:4] == [f"tlkit: error: run folder not found: {nope}"] * 4
    assert errors[4:] == ["tlkit: error: data.path: not found: /no/such/folder"] * 2


def test_unknown_backbone_says_did_you_mean_and_lists_each_name_once(tmp_path, capsys):
    from tlkit import registry

    with pytest.raises(ValueError) as error:
        tlkit.backbones.get("efficientnet_lit0")
    for message in (str(error.value), _train_error(tmp_path, capsys)):
        assert "Did you mean 'efficientnet_lite0'?" in message and "\n" not in message
        for name in registry.BACKBONES.names():
            assert message.count(f"{name},") + message.count(f"{name})") == 1, (name, message)


def _train_error(tmp_path, capsys):
    """`tlkit train` of a misspelt backbone into a folder holding another recipe's finished run:
    the recipe's own error comes first."""
    run = tmp_path / "runs" / "taken"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: another\n")
    (run / "state.json").write_text('{"complete": true, "stages_done": ["all"]}')
    (run / "model.keras").write_bytes(b"")
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("backbone: {name: efficientnet_lit0}\ndata: {source: digits}\n")
    assert cli.main(["train", str(recipe), "--output", str(run)]) == 1
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("tlkit: error:")]
    assert "unknown backbone" in line and "different recipe" not in line
    return line


def test_audit_of_loaded_data_sees_the_files_as_on_disk(photos):
    """`tlkit audit RECIPE` (a `LabeledData` resized by `image_size`) flags the same odd files as
    `tlkit audit FOLDER`, and sizes that all differ are reported as a range."""
    folder = tlkit.data.audit(photos, progress=False)
    loaded = tlkit.data.audit(tlkit.data.from_image_folder(photos, image_size=16),
                              progress=False)
    odd = {os.path.basename(u["item"]).split(".")[0] + u["issue"] for u in folder.unexpected}
    assert odd and {os.path.basename(u["item"]).split(".")[0] + u["issue"]
                    for u in loaded.unexpected} == odd
    assert any("mode L" in u["issue"] for u in loaded.unexpected)
    sizes, _ = _sizes(photos)
    for report in (folder, loaded):
        assert report.size_range == {
            "distinct": len(sizes), "height": [min(h for _, h in sizes), max(h for _, h in sizes)],
            "width": [min(w for w, _ in sizes), max(w for w, _ in sizes)]}
        assert "most images" not in report.to_text() and "image sizes: 18 distinct" in \
            report.to_text()


def test_export_parity_below_098_warns_and_names_the_format_to_ship(tmp_path, monkeypatch):
    from tlkit.export import folder as folder_lib
    from tlkit.runner.export import PARITY_INPUTS

    assert PARITY_INPUTS >= 200
    drift = {"max_abs_diff": 0.056, "top1_agreement": 0.9375, "num_examples": 256}
    monkeypatch.setattr(folder_lib, "export_tflite", lambda *a, **k: {
        "path": "x.tflite", "size_bytes": 10, "parity": dict(drift)})
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    record = folder_lib.export_model(model, str(tmp_path), ["tflite-dynamic"])
    warning = record["tflite-dynamic"]["warning"]
    assert "0.938 on 256 inputs" in warning and "ship 'tflite' instead" in warning
    agree = {**drift, "top1_agreement": 0.99}
    assert folder_lib.parity_warning("tflite-int8", agree) is None
    assert "ship 'tflite-dynamic'" in folder_lib.parity_warning("tflite-int8", drift)
