"""Bad input to the CLI, recipes, data loaders, backbones and export: one table, one check.

Each case runs `tlkit.cli.main(argv)` in-process (a subprocess per case would pay the
TensorFlow import each time) and asserts the exit code, one `tlkit: error:` line naming the
problem, no traceback, and that a finished run folder is byte-identical afterwards.
"""

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tlkit import cli
from tlkit.recipes import preflight

ROOT = os.path.join(os.path.dirname(__file__), "..")
SMOKE = os.path.join(ROOT, "recipes", "smoke.yaml")


# -- fixtures --------------------------------------------------------------------------------------
def _smoke_dict():
    with open(SMOKE) as f:
        return yaml.safe_load(f)


def _write_recipe(folder, name, data=None, text=None, drop=(), **sections):
    path = os.path.join(folder, f"{name}.yaml")
    if text is None:
        recipe = {**_smoke_dict(), **sections}
        for key in drop:
            recipe.pop(key, None)
        if data is not None:
            recipe["data"] = data
        text = yaml.safe_dump(recipe)
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory, copy_smoke_run):
    """A finished smoke run (a copy of the session's, tests/conftest.py), recipes and data files
    for every case (built once)."""
    base = tmp_path_factory.mktemp("bad")
    run = copy_smoke_run(base / "run")
    fix = str(base / "fix")
    os.makedirs(fix)
    tiny = {"name": "tiny"}
    with open(os.path.join(fix, "extra_field.csv"), "w") as f:
        f.write("text,label\ngood one,pos\nbad one,neg\nhello, world,pos\nfine,neg\nok,pos\n")
    with open(os.path.join(fix, "no_label.csv"), "w") as f:
        f.write("text,target\na,x\nb,y\n")
    np.savez(os.path.join(fix, "nan.npz"), x=np.zeros((6, 4), "float32"),
             y=np.array([0.0, np.nan, 1, 0, 1, 0]))
    np.savez(os.path.join(fix, "no_y.npz"), x=np.zeros((6, 4), "float32"))
    os.makedirs(os.path.join(fix, "one_class", "cat"))
    os.makedirs(os.path.join(fix, "not_a_run", "stuff"))
    from PIL import Image

    for folder, classes in (("empty_class", ("cat", "dog")), ("unreadable_class", ("cat", "dog"))):
        for label in classes:
            os.makedirs(os.path.join(fix, folder, label))
            for i in range(3):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(
                    os.path.join(fix, folder, label, f"{i}.png"))
    os.makedirs(os.path.join(fix, "empty_class", "bird"))
    os.makedirs(os.path.join(fix, "unreadable_class", "fish"))
    for i in range(2):
        with open(os.path.join(fix, "unreadable_class", "fish", f"{i}.png"), "w") as f:
            f.write("not an image\n")
    with open(os.path.join(fix, "notes.txt"), "w") as f:
        f.write("hello\n")
    text_data = {"source": "csv", "x_col": "text", "y_col": "label", "kind": "text",
                 "batch_size": 4}
    recipes = {
        "empty": _write_recipe(fix, "empty", text=""),
        "comment_only": _write_recipe(fix, "comment_only", text="# nothing here\n"),
        "no_backbone": _write_recipe(fix, "no_backbone", drop=("backbone",)),
        "bad_yaml": _write_recipe(fix, "bad_yaml", text="backbone: {name: tiny\n"),
        "a_list": _write_recipe(fix, "a_list", text="- backbone\n- data\n"),
        "optimiser": _write_recipe(fix, "optimiser", optimiser={"lr": 1e-3}),
        "csv_extra": _write_recipe(
            fix, "csv_extra", backbone={"name": "tiny_text"},
            data={**text_data, "path": os.path.join(fix, "extra_field.csv")}),
        "csv_column": _write_recipe(
            fix, "csv_column", backbone={"name": "tiny_text"},
            data={**text_data, "path": os.path.join(fix, "no_label.csv")}),
        "npz_nan": _write_recipe(fix, "npz_nan", data={
            "source": "numpy", "path": os.path.join(fix, "nan.npz")}),
        "npz_no_y": _write_recipe(fix, "npz_no_y", data={
            "source": "numpy", "path": os.path.join(fix, "no_y.npz")}),
        "one_class": _write_recipe(fix, "one_class", data={
            "source": "folder", "path": os.path.join(fix, "one_class")}),
        "tfds_missing": _write_recipe(fix, "tfds_missing", data={
            "source": "tfds", "name": "mnist", "options": {"data_dir": os.path.join(fix, "tfds")}}),
        "tfds_unknown": _write_recipe(fix, "tfds_unknown", data={
            "source": "tfds", "name": "no_such_dataset_tlkit"}),
        "hub_offline": _write_recipe(fix, "hub_offline", backbone={
            "handle": "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"}),
        "both_offline": _write_recipe(
            fix, "both_offline",
            backbone={"handle": "https://tfhub.dev/google/x/feature_vector/5"},
            data={"source": "tfds", "name": "mnist",
                  "options": {"data_dir": os.path.join(fix, "tfds")}}),
        "keras_offline": _write_recipe(fix, "keras_offline", backbone={"name": "EfficientNetB0"}),
        "keras_hub_offline": _write_recipe(
            fix, "keras_hub_offline", backbone={"name": "keras_hub:bert_tiny_en_uncased"}),
        "no_tune": _write_recipe(fix, "no_tune", backbone=tiny, drop=("tune",)),
    }
    # #30: hostile recipes
    bomb = "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    recipes["bomb"] = _write_recipe(
        fix, "bomb", text="backbone: {name: tiny}\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, "
        "lol, lol]\n" + bomb.replace("a9: &a9", "description: &a9"))
    recipes["huge"] = _write_recipe(fix, "huge", text="backbone: {name: tiny}\ndescription: "
                                    + "x" * (2 << 20) + "\n")
    with open(os.path.join(fix, "utf16.yaml"), "wb") as f:
        f.write("backbone: {name: tiny}\ndescription: caf\u00e9\n".encode("utf-16"))
    with open(os.path.join(fix, "latin1.yaml"), "wb") as f:
        f.write("backbone: {name: tiny}\ndescription: caf\u00e9\n".encode("latin-1"))
    # #30: a user's folder named as output, and damaged copies of the finished run
    os.makedirs(os.path.join(fix, "export_decoy", "savedmodel"))
    with open(os.path.join(fix, "export_decoy", "savedmodel", "precious.txt"), "w") as f:
        f.write("keep me\n")
    os.makedirs(os.path.join(fix, "decoy"))
    with open(os.path.join(fix, "decoy", "precious.txt"), "w") as f:
        f.write("keep me\n")
    damaged = {
        "state_list": {"state.json": "[]"},
        "state_broken": {"state.json": '{"stages_done": ["head"'},
        "metrics_list": {"metrics.json": "[1, 2]"},
        "names_short": {"class_names.json": '["0"]'},
        "model_empty": {"model.keras": ""},
        "model_text": {"model.keras": "not a model\n"},
        "model_dir": {"model.keras": None},
        "calibration_broken": {"calibration.json": '{"temperature": '},
        "history_object": {"history.json": '{"epoch": 1}'},
        "lambda": {"model.keras": _lambda_model},
        "exec": {"model.keras": _exec_model},
    }
    runs = {}
    for name, files in damaged.items():
        copy = runs[f"D_{name}"] = os.path.join(fix, f"run_{name}")
        shutil.copytree(run, copy)
        for file, content in files.items():
            path = os.path.join(copy, file)
            os.remove(path) if os.path.isfile(path) else None
            if content is None:
                os.makedirs(path)
            elif callable(content):
                content(path)
            else:
                with open(path, "w") as f:
                    f.write(content)
    return {"RUN": run, "FIX": fix, "SMOKE": SMOKE, **runs,
            **{f"R_{k}": v for k, v in recipes.items()}}


def _double(x):
    return x * 2


def _lambda_model(path):
    """A `.keras` file whose Lambda layer names a Python function (`_double`)."""
    import keras

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Lambda(_double)(keras.layers.Flatten()(inputs))
    keras.Model(inputs, keras.layers.Dense(10)(outputs)).save(path)


def _exec_model(path):
    """The Lambda model with its function renamed to `builtins.exec` in `config.json`."""
    import zipfile

    source = path[: -len(".keras")] + "_source.keras"
    _lambda_model(source)
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b'"_double"', b'"exec"').replace(
                    b'"test_bad_inputs"', b'"builtins"')
            out.writestr(item, data)
    os.remove(source)


def _snapshot(folder):
    digests = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digests


# -- the table -------------------------------------------------------------------------------------
# (id, argv with {PLACEHOLDERS}, exit code, text the error line must contain, options)
# Options: "offline" makes the download hosts unreachable (preflight.is_online -> False).
USAGE = 2
BAD = 1
CASES = [
    # command line (argparse): usage + one error line, exit 2
    ("no-command", [], USAGE, "required: COMMAND", ()),
    ("unknown-command", ["trian"], USAGE, "invalid choice: 'trian'", ()),
    ("train-no-recipe", ["train"], USAGE, "the following arguments are required: recipe", ()),
    ("export-no-format", ["export", "{RUN}"], USAGE, "--format", ()),
    ("export-bad-format", ["export", "{RUN}", "--format", "pdf"], USAGE, "invalid choice: 'pdf'",
     ()),
    ("predict-no-input", ["predict", "{RUN}"], USAGE, "required: inputs", ()),
    ("predict-top-not-int", ["predict", "{RUN}", "x.png", "--top", "many"], USAGE,
     "invalid int value", ()),
    ("unknown-flag", ["train", "{SMOKE}", "--forse"], USAGE, "unrecognized arguments: --forse", ()),
    # recipes
    ("recipe-missing", ["train", "{FIX}/missing.yaml"], BAD, "recipe not found", ()),
    ("recipe-is-folder", ["train", "{FIX}"], BAD, "is a folder", ()),
    ("recipe-empty", ["train", "{R_empty}"], BAD, "backbone: required section", ()),
    ("recipe-comment-only", ["train", "{R_comment_only}"], BAD, "backbone: required section", ()),
    ("recipe-no-backbone", ["train", "{R_no_backbone}"], BAD, "backbone: required section", ()),
    ("recipe-bad-yaml", ["train", "{R_bad_yaml}"], BAD, "not valid YAML", ()),
    ("recipe-a-list", ["train", "{R_a_list}"], BAD, "expected a mapping of recipe sections", ()),
    ("recipe-typo-section", ["train", "{R_optimiser}"], BAD, "did you mean 'optimizer'", ()),
    ("set-no-equals", ["train", "{SMOKE}", "--set", "optimizer.lr"], BAD, "expected KEY=VALUE", ()),
    ("set-unknown-key", ["train", "{SMOKE}", "--set", "optimizer.lrr=1"], BAD,
     "unknown key 'lrr' in 'optimizer'; did you mean 'lr'", ()),
    ("set-wrong-type", ["train", "{SMOKE}", "--set", "optimizer.lr=fast"], BAD,
     "optimizer.lr: expected a float", ()),
    ("set-dropout-range", ["train", "{SMOKE}", "--set", "head.dropout=1.5"], BAD, "head.dropout", ()),
    ("set-batch-zero", ["train", "{SMOKE}", "--set", "data.batch_size=0"], BAD,
     "data.batch_size: expected an int >= 1, got 0", ()),
    ("set-two-backbones", ["train", "{SMOKE}", "--set", "backbone.path=/x"], BAD,
     "exactly one of 'name', 'handle' or 'path'", ()),
    ("set-csv-no-path", ["train", "{SMOKE}", "--set", "data.source=csv"], BAD,
     "data.path: required when data.source is 'csv'", ()),
    ("set-no-epochs", ["train", "{SMOKE}", "--set", "phases.head_epochs=0", "--set",
                       "phases.fine_epochs=0"], BAD, "head_epochs + fine_epochs >= 1", ()),
    ("set-bad-name", ["train", "{SMOKE}", "--set", "name=my run"], BAD, "name: expected letters",
     ()),
    ("set-bad-strategy", ["train", "{SMOKE}", "--set", "distribute.strategy=quantum"], BAD,
     "distribute.strategy", ()),
    ("set-section-is-value", ["train", "{SMOKE}", "--set", "seed.x=1"], BAD, "not a section", ()),
    ("tune-without-space", ["tune", "{R_no_tune}"], BAD, "no 'tune' section", ()),
    # data: checked before any run folder is created or replaced
    ("folder-missing", ["train", "{SMOKE}", "--output", "{FIX}/out_folder", "--set",
                        "data.source=folder", "--set", "data.path={FIX}/nope"], BAD,
     "data.path: not found", ()),
    ("npz-missing", ["train", "{SMOKE}", "--set", "data.source=numpy", "--set",
                     "data.path={FIX}/nope.npz"], BAD, "data.path: not found", ()),
    ("csv-extra-field", ["train", "{R_csv_extra}", "--output", "{FIX}/out_csv"], BAD,
     "row 3 (line 4): has 1 more field(s) than the header", ()),
    ("csv-missing-column", ["train", "{R_csv_column}", "--output", "{FIX}/out_col"], BAD,
     "Column 'label' not found", ()),
    ("npz-nan-label", ["train", "{R_npz_nan}", "--output", "{FIX}/out_nan"], BAD,
     "y[1] = nan is not an integer class index", ()),
    ("npz-no-y", ["train", "{R_npz_no_y}", "--output", "{FIX}/out_noy"], BAD,
     "has no array 'y'", ()),
    ("folder-one-class", ["train", "{R_one_class}", "--output", "{FIX}/out_one"], BAD,
     "Found only 1 class ('cat')", ()),
    ("tfds-offline", ["train", "{R_tfds_missing}", "--output", "{FIX}/out_tfds"], BAD,
     "set data.options.data_dir (or the TFDS_DATA_DIR environment variable)", ("offline",)),
    ("tfds-unknown", ["train", "{R_tfds_unknown}"], BAD,
     "data.name: no TFDS data set 'no_such_dataset_tlkit'", ()),
    ("audit-tfds-offline", ["audit", "{R_tfds_missing}"], BAD, "data.options.data_dir",
     ("offline",)),
    ("lr-find-missing-data", ["lr-find", "{SMOKE}", "--output", "{FIX}/out_lr", "--set",
                              "data.source=csv", "--set", "data.path={FIX}/nope.csv", "--set",
                              "data.x_col=a", "--set", "data.y_col=b"], BAD,
     "data.path: not found", ()),
    ("tune-hub-offline", ["tune", "{R_hub_offline}", "--output", "{FIX}/out_tune", "--set",
                          "tune.space={optimizer.lr: {min: 1.0e-4, max: 1.0e-2}}"], BAD,
     "TFHUB_CACHE_DIR", ("offline",)),
    ("audit-missing", ["audit", "{FIX}/nope"], BAD, "data not found", ()),
    ("audit-not-a-recipe", ["audit", "{FIX}/notes.txt"], BAD, "expected a recipe (.yaml)", ()),
    # backbones
    ("backbone-path-missing", ["train", "{SMOKE}", "--set", "backbone.name=null", "--set",
                               "backbone.path={FIX}/no_model"], BAD,
     "backbone.path: SavedModel folder not found", ()),
    ("backbone-unknown-name", ["train", "{SMOKE}", "--set", "backbone.name=resnet9000"], BAD,
     "backbone.name: unknown backbone 'resnet9000'", ()),
    ("backbone-unknown-option", ["train", "{SMOKE}", "--output", "{FIX}/out_opt", "--set",
                                 "backbone.name=MobileNetV2", "--set",
                                 "backbone.options={weights: null, image_size: 32}"], BAD,
     "backbone.options: Backbone 'MobileNetV2' takes no option 'image_size'. Its options: "
     "weights, input_shape", ()),
    ("hub-offline", ["train", "{R_hub_offline}"], BAD, "TFHUB_CACHE_DIR", ("offline",)),
    ("keras-weights-offline", ["train", "{R_keras_offline}"], BAD,
     "backbone.options.weights", ("offline",)),
    ("keras-hub-offline", ["train", "{R_keras_hub_offline}"], BAD,
     "KerasHub preset 'bert_tiny_en_uncased'", ("offline",)),
    ("data-and-backbone-offline", ["train", "{R_both_offline}"], BAD,
     "data.options.data_dir", ("offline", "also:backbone.handle")),
    # runs, predict, export
    ("evaluate-missing-run", ["evaluate", "{FIX}/no_run"], BAD, "run folder not found", ()),
    ("evaluate-not-a-run", ["evaluate", "{FIX}/not_a_run"], BAD, "no model.keras", ()),
    ("export-not-a-run", ["export", "{FIX}/not_a_run", "--format", "keras"], BAD,
     "no model.keras", ()),
    ("predict-missing-input", ["predict", "{RUN}", "{FIX}/nope.png"], BAD, "input not found", ()),
    ("train-other-recipe-on-run", ["train", "{SMOKE}", "--output", "{RUN}", "--set", "seed=3"],
     BAD, "different recipe", ()),
    ("train-into-non-run-folder", ["train", "{SMOKE}", "--output", "{FIX}/not_a_run"], BAD,
     "not a tlkit run folder", ()),
    ("force-with-missing-data", ["train", "{SMOKE}", "--output", "{RUN}", "--force", "--set",
                                 "data.source=folder", "--set", "data.path={FIX}/nope"], BAD,
     "data.path: not found", ()),
    ("force-with-bad-rows", ["train", "{R_csv_extra}", "--output", "{RUN}", "--force"], BAD,
     "more field(s) than the header", ()),
    # #30 data loss and denial of service
    ("force-into-non-run-folder", ["train", "{SMOKE}", "--output", "{FIX}/decoy", "--force"], BAD,
     "is not a tlkit run folder (no .tlkit-run marker)", ()),
    ("train-into-non-run-folder-no-force-hint", ["train", "{SMOKE}", "--output", "{FIX}/decoy"],
     BAD, "choose another --output, or move its files away yourself", ()),
    ("export-over-a-users-folder", ["export", "{RUN}", "--format", "savedmodel", "--output",
                                    "{FIX}/export_decoy"], BAD,
     "{FIX}/export_decoy/savedmodel exists and is not a SavedModel (no saved_model.pb)", ()),
    ("train-on-locked-run", ["train", "{SMOKE}", "--output", "{RUN}"], BAD,
     "is in use by another tlkit process (pid {PID}, tlkit train since", ("locked",)),
    ("export-on-locked-run", ["export", "{RUN}", "--format", "keras"], BAD,
     "(pid {PID}, tlkit train since", ("locked",)),
    ("evaluate-on-locked-run", ["evaluate", "{RUN}"], BAD, "stop it (kill {PID})", ("locked",)),
    ("report-on-locked-run", ["report", "{RUN}"], BAD, "in use by another tlkit process",
     ("locked",)),
    ("recipe-alias-bomb", ["train", "{R_bomb}"], BAD, "expands to more than 100000 values", ()),
    ("set-alias-bomb", ["train", "{SMOKE}", "--set", "description=[&a [x,x,x,x,x,x,x,x,x,x], "
                        "&b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], "
                        "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]]"],
     BAD, "--set description: value is not valid YAML (the document expands", ()),
    ("recipe-too-large", ["train", "{R_huge}"], BAD, "larger than 1 MiB", ()),
    ("set-description-list", ["train", "{SMOKE}", "--set", "description=[" + "x," * 5000 + "x]"],
     BAD, "description: expected a string, got ['x', 'x',", ()),
    ("set-lr-nan", ["train", "{SMOKE}", "--set", "optimizer.lr=.nan"], BAD,
     "optimizer.lr: expected a finite float (not NaN or infinity), got nan", ()),
    ("set-lr-inf", ["train", "{SMOKE}", "--set", "optimizer.lr=.inf"], BAD,
     "optimizer.lr: expected a finite float", ()),
    ("set-head-lr-inf", ["train", "{SMOKE}", "--set", "optimizer.head_lr=-.inf"], BAD,
     "optimizer.head_lr: expected a finite float", ()),
    ("set-dropout-nan", ["train", "{SMOKE}", "--set", "head.dropout=.nan"], BAD,
     "head.dropout: expected a finite float", ()),
    ("set-val-fraction-nan", ["train", "{SMOKE}", "--set", "data.splits.val_fraction=.nan"], BAD,
     "data.splits.val_fraction: expected a finite float", ()),
    ("set-augmentation-nan", ["train", "{SMOKE}", "--set", "data.augmentation={rotation: .nan}"],
     BAD, "data.augmentation.rotation: expected a finite number (not NaN or infinity)", ()),
    ("set-backbone-option-inf", ["train", "{SMOKE}", "--set", "backbone.options={scale: .inf}"],
     BAD, "backbone.options.scale: expected a finite number", ()),
    ("set-lr-huge", ["train", "{SMOKE}", "--set", "optimizer.lr=1e300"], BAD,
     "optimizer.lr: expected a float <= 10000, got 1e+300", ()),
    ("set-image-size-huge", ["train", "{SMOKE}", "--set", "data.image_size=100000"], BAD,
     "data.image_size: expected an int <= 4096, got 100000", ()),
    ("set-image-size-pair-huge", ["train", "{SMOKE}", "--set", "data.image_size=[64, 100000]"],
     BAD, "data.image_size[1]: expected an int <= 4096", ()),
    ("set-batch-huge", ["train", "{SMOKE}", "--set", "data.batch_size=100000000"], BAD,
     "data.batch_size: expected an int <= 65536", ()),
    ("set-epochs-huge", ["train", "{SMOKE}", "--set", "phases.fine_epochs=1000000000"], BAD,
     "phases.fine_epochs: expected an int <= 100000", ()),
    ("set-hidden-units-huge", ["train", "{SMOKE}", "--set", "head.hidden_units=[10000000]"], BAD,
     "head.hidden_units[0]: expected an int <= 65536", ()),
    ("set-seed-huge", ["train", "{SMOKE}", "--set", "seed=99999999999"], BAD,
     "seed: expected an int <= 4294967295", ()),
    # #30 damaged run records: one line naming the file and what to do
    ("report-state-list", ["report", "{D_state_list}"], BAD,
     "state.json: damaged record: expected a JSON object with 'stages_done', got []; the run's "
     "progress is unknown; retrain the run", ()),
    ("train-state-list", ["train", "{SMOKE}", "--output", "{D_state_list}"], BAD,
     "state.json: damaged record", ()),
    ("report-state-broken", ["report", "{D_state_broken}"], BAD,
     "state.json: damaged record: not valid JSON (Expecting", ()),
    ("report-metrics-list", ["report", "{D_metrics_list}"], BAD,
     "metrics.json: damaged record: expected a JSON object, got [1, 2]; rewrite it with tlkit "
     "evaluate", ()),
    ("predict-class-names-short", ["predict", "{D_names_short}", "{FIX}/notes.txt"], BAD,
     "class_names.json: damaged record: 1 class names for a model with 10 outputs", ()),
    ("predict-model-empty", ["predict", "{D_model_empty}", "{FIX}/notes.txt"], BAD,
     "model.keras: not a loadable Keras model (0 bytes, not a zip archive", ()),
    ("evaluate-model-text", ["evaluate", "{D_model_text}"], BAD,
     "model.keras: not a loadable Keras model (12 bytes, not a zip archive", ()),
    ("export-model-folder", ["export", "{D_model_dir}", "--format", "keras"], BAD,
     "model.keras: not a loadable Keras model (a folder where a .keras file was expected)", ()),
    ("predict-calibration-broken", ["predict", "{D_calibration_broken}", "{FIX}/notes.txt"], BAD,
     "calibration.json: damaged record: not valid JSON", ()),
    ("report-history-object", ["report", "{D_history_object}"], BAD,
     "history.json: damaged record: expected a JSON list of epoch records", ()),
    ("predict-lambda-function", ["predict", "{D_lambda}", "{FIX}/notes.txt"], BAD,
     "refers to a function Keras does not know or will not load", ()),
    ("predict-builtins-exec", ["predict", "{D_exec}", "{FIX}/notes.txt"], BAD,
     "refers to a function Keras does not know or will not load ('exec'", ()),
    # #30 inputs
    ("recipe-utf16", ["train", "{FIX}/utf16.yaml"], BAD, "utf16.yaml: is UTF-16", ()),
    ("recipe-latin1", ["train", "{FIX}/latin1.yaml"], BAD,
     "latin1.yaml: line 2: not UTF-8 text (byte 0xe9", ()),
    ("folder-empty-class", ["train", "{SMOKE}", "--output", "{FIX}/out_empty_class", "--set",
                            "data.source=folder", "--set", "data.path={FIX}/empty_class", "--set",
                            "data.per_class=null"], BAD,
     "class folder(s) ['bird'] in '{FIX}/empty_class' hold no image files", ()),
    ("folder-unreadable-class", ["train", "{SMOKE}", "--output", "{FIX}/out_bad_class", "--set",
                                 "data.source=folder", "--set", "data.path={FIX}/unreadable_class",
                                 "--set", "data.per_class=null"], BAD,
     "class 'fish': all 2 image file(s) in split 'all' are unreadable (first: {FIX}/"
     "unreadable_class/fish/0.png", ()),
    ("predict-top-zero", ["predict", "{RUN}", "x.png", "--top", "0"], BAD,
     "--top: expected an int >= 1", ()),
    ("bench-unknown", ["bench", "no_such_bench", "--dir", os.path.join(ROOT, "benchmarks")], BAD,
     "unknown benchmark 'no_such_bench'", ()),
]


def _fill(argv, env):
    out = []
    for arg in argv:
        for key, value in env.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


@pytest.mark.parametrize("argv,code,needle,options", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line(env, argv, code, needle, options, capsys, monkeypatch,
                                       request):
    if "offline" in options:
        monkeypatch.setattr(preflight, "is_online", lambda host=None: False)
        monkeypatch.setenv("TFHUB_CACHE_DIR", os.path.join(env["FIX"], "hub_cache"))
        monkeypatch.setenv("KERAS_HOME", os.path.join(env["FIX"], "keras_home"))
        monkeypatch.setenv("KAGGLEHUB_CACHE", os.path.join(env["FIX"], "kaggle_cache"))
    watched = [env["RUN"], os.path.join(env["FIX"], "export_decoy"), os.path.join(
        env["FIX"], "decoy")] + [v for k, v in env.items() if k.startswith("D_")]
    before = [_snapshot(folder) for folder in watched]
    if "locked" in options:  # another process holds the run's lock (its record names it)
        holder = _hold_lock(env["RUN"], request)
        env = {**env, "PID": str(holder)}
        needle = needle.replace("{PID}", str(holder))
    argv = _fill(argv, env)
    needle = _fill([needle], env)[0]
    if code == USAGE:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        result = exit_info.value.code
    else:
        result = cli.main(["-q", *argv])
    err = capsys.readouterr().err
    assert result == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, err
    assert errors[0].startswith("tlkit") and needle in errors[0], errors[0]
    for extra in options:
        if extra.startswith("also:"):
            assert extra[len("also:"):] in errors[0]
    if code == BAD:  # only usage errors print more than the one line (argparse's usage)
        assert lines == errors, err
    assert [_snapshot(folder) for folder in watched] == before, "a run folder changed"
    if "offline" in options:
        out = [a for a in argv if a.startswith(env["FIX"] + "/out_")]
        assert not out or not os.path.exists(out[0]), "a run folder was created before checking"


def _hold_lock(run, request):
    """Takes `run`'s lock as another process would (a separate open file: `flock` conflicts),
    with a record naming that process; released when the test ends. Returns the pid named."""
    import fcntl
    import json
    import time

    from tlkit.runner.run_lock import lock_path

    path, pid = lock_path(run), 424242
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": pid, "verb": "train", "since": time.time()}).encode())

    def release():
        os.remove(path)
        os.close(fd)

    request.addfinalizer(release)
    return pid


def test_the_table_covers_forty_cases():
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)


def test_debug_shows_the_traceback(env):
    with pytest.raises(FileNotFoundError, match="recipe not found"):
        cli.main(["--debug", "train", os.path.join(env["FIX"], "missing.yaml")])


def test_help_does_not_import_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "from tlkit import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    try:\n"
        "        cli.main(['train'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    assert cli.main(['bench', '--list']) == 0\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT}, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_console_script_reports_one_line(tmp_path):
    """The real `tlkit` process: exit code 1, one line, no traceback (and no TensorFlow
    import, whose start-up logs would come first)."""
    out = subprocess.run(
        [sys.executable, "-m", "tlkit.cli", "train", str(tmp_path / "missing.yaml")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert out.returncode == 1
    assert out.stderr.strip() == f"tlkit: error: recipe not found: {tmp_path / 'missing.yaml'}"


def test_failed_first_attempt_is_marked_and_evaluate_says_so(env, capsys):
    out = os.path.join(env["FIX"], "failed_run")
    assert cli.main(["-q", "train", env["R_npz_nan"], "--output", out]) == 1
    capsys.readouterr()
    assert cli.main(["-q", "evaluate", out]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("tlkit: error:") and "failed before its first checkpoint" in line
    assert "nan is not an integer class index" in line
    shutil.rmtree(out)


def test_a_file_name_that_is_not_utf8_is_skipped_and_listed(tmp_path, monkeypatch, caplog):
    """#30 item 9: `b'bad\\xff\\xfename.png'` in a class folder: skipped with its reason (the
    decode-check cache and TensorFlow cannot take the name), the other files load."""
    from PIL import Image

    import tlkit.data

    monkeypatch.setenv("TLKIT_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        os.makedirs(tmp_path / "imgs" / label)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype="uint8")).save(
                tmp_path / "imgs" / label / f"{i}.png")
    bad = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"imgs", b"cat", b"bad\xff\xfename.png"))
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype="uint8")).save(bad)
    data = tlkit.data.from_image_folder(str(tmp_path / "imgs"), val_fraction=0.25,
                                        test_fraction=0.25)
    assert [s.source for s in data.skipped] == [bad]
    assert "not valid UTF-8" in data.skipped[0].reason
    assert sum(data.num_examples(s) for s in data.splits) == 8
    assert "cat/bad\\xff\\xfename.png (the file name is not valid UTF-8" in caplog.text
