"""FineTuneConfig: one declaration of every fine-tuning setting, read by fine_tune, recipes and
the tuner; the public middle layer (`fine_tune_plan`) inside a user's own `model.fit`."""

import dataclasses
import importlib
import inspect
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit import config as config_lib
from tlkit.recipes import Recipe, RecipeError
from tlkit.testing import tiny_model
from tlkit.training.fine_tuning import fine_tune, split_overrides
from tlkit.tuning import space as space_lib
from tlkit.unfreeze import UnfreezeSchedule


def _recipe_value(recipe, key):
    section, name = key.split(".")
    return getattr(getattr(recipe, section), name)


def test_every_field_reachable_from_yaml_and_fine_tune_with_one_default():
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}})
    for name, field in config_lib.FIELDS.items():
        meta = field.metadata
        assert meta["help"], name
        # From YAML: the recipe key exists and its default is the config's.
        assert _recipe_value(recipe, meta["yaml"]) == config_lib.DEFAULTS[name], name
        # From fine_tune: the field name is an accepted override.
        fields, _, _ = split_overrides({name: config_lib.DEFAULTS[name]})
        assert fields == {name: config_lib.DEFAULTS[name]}
    assert recipe.fine_tune_config() == config_lib.FineTuneConfig()
    # fine_tune itself declares no setting twice: they come in via `config` / `**overrides`.
    params = set(inspect.signature(fine_tune).parameters)
    assert not params & set(config_lib.FIELDS)


def test_yaml_sets_each_field():
    values = {"head_epochs": 2, "fine_epochs": 4, "unfreeze": "table", "first": 2, "every": 2,
              "per_step": 0, "table": {0: 1, 2: "all"}, "bn_policy": "update", "patience": None,
              "optimizer": "adamw", "lr": 3e-4, "head_lr": 1e-2, "layerwise_decay": None,
              "lr_schedule": "one_cycle", "weight_decay": 0.01, "jit_compile": False,
              "steps_per_execution": 4, "layer_decay": 0.75,
              "ema_momentum": 0.99, "label_smoothing": 0.1, "mixup": 0.2, "cutmix": 1.0,
              "class_weight": {0: 1.0, 1: 3.0}, "loss_type": "focal", "focal_gamma": 1.5,
              "wise_ft_alphas": [0.5, 1.0], "swa_epochs": 2,
              "strategy": "surgical", "surgical_group": "block2", "probe_c": 0.1,
              "probe_temperature": 2.0, "min_steps_per_epoch": 4, "restore_head_epoch": "always",
              "restore_best_from": 50,
              "pseudo_label_threshold": 0.8, "pseudo_labels_per_class": 50}
    assert set(values) == set(config_lib.FIELDS)
    data = {"backbone": {"name": "tiny"}}
    for name, value in values.items():
        section, key = config_lib.FIELDS[name].metadata["yaml"].split(".")
        data.setdefault(section, {})[key] = value
    recipe = Recipe.from_dict(data)
    assert recipe.fine_tune_config() == config_lib.FineTuneConfig(**values)
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_get_config_round_trip_and_errors_name_the_field():
    config = config_lib.FineTuneConfig(head_epochs=2, unfreeze="table", table={1: "all"})
    assert config_lib.FineTuneConfig.from_config(config.get_config()) == config
    with pytest.raises(config_lib.ConfigError, match=r"bn_policy: expected one of 'frozen'"):
        config_lib.FineTuneConfig(bn_policy="train")
    with pytest.raises(config_lib.ConfigError, match=r"lr: expected a float > 0, got 0"):
        config.replace(lr=0)
    with pytest.raises(config_lib.ConfigError, match="did you mean 'lr_schedule'"):
        config_lib.FineTuneConfig.from_config({"lr_shedule": "cosine"})
    with pytest.raises(config_lib.ConfigError, match="table: required"):
        config_lib.FineTuneConfig(unfreeze="table")
    # The recipe names the YAML key for the same rule.
    with pytest.raises(RecipeError, match=r"^phases.every: expected an int >= 1, got 0"):
        Recipe.from_dict({"phases": {"every": 0}})
    with pytest.raises(RecipeError, match=r"phases.table: required"):
        Recipe.from_dict({"phases": {"schedule": "table"}})


def test_config_module_imports_no_tensorflow():
    code = ("import sys, tlkit; c = tlkit.FineTuneConfig(lr=1e-3); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'heavy'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tuning_space_names_config_fields():
    for short, field in space_lib.FIELD_OF.items():
        tunable = space_lib.TUNABLE[short]
        meta = config_lib.FIELDS[field].metadata
        assert tunable.recipe_key == meta["yaml"]
        assert (tunable.low, tunable.high, tunable.low_open) == (
            meta["min"], meta["max"], meta["min_open"])
        assert tunable.allowed == config_lib.choices(field)
        assert space_lib.DEFAULTS[short] == config_lib.DEFAULTS[field]
    with pytest.raises(ValueError, match="bn_policy"):
        space_lib.SearchSpace.from_config({"bn_policy": {"values": ["frozen", "train"]}})


@pytest.mark.parametrize("first,per_step,fine_epochs,expected", [
    (None, None, 2, [0, 2, 3]),   # 3 groups spread over 2 fine epochs
    (None, None, 3, [0, 1, 2, 3]),
    (1, 1, 2, [0, 1, 2]),         # one group per epoch
    (2, 0, 2, [0, 2, 2]),         # fixed depth
])
def test_gradual_means_the_same_in_fine_tune_and_recipes(first, per_step, fine_epochs, expected):
    config = config_lib.FineTuneConfig(head_epochs=1, fine_epochs=fine_epochs, first=first,
                                       per_step=per_step)
    schedule = UnfreezeSchedule.from_fine_tune_config(config, 3)
    assert [schedule.num_unfrozen(e, 3) for e in range(1 + fine_epochs)] == expected
    recipe = Recipe.from_dict({"phases": {"head_epochs": 1, "fine_epochs": fine_epochs,
                                          "schedule": "gradual", "first": first,
                                          "per_step": per_step}})
    assert recipe.fine_tune_config() == config


def test_fine_tune_plan_in_own_fit():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 127).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = tiny_model(compile=False)
    config = tlkit.FineTuneConfig(head_epochs=1, fine_epochs=2, lr=1e-3, lr_schedule="constant",
                                  patience=None)
    plan = tlkit.fine_tune_plan(model, config, steps_per_epoch=2, verbose=0)
    model.compile(optimizer=plan.optimizer, loss="sparse_categorical_crossentropy")
    tlkit.prepare_optimizer(model, bn_policy=config.bn_policy)
    before = {v.path: v.numpy().copy() for v in model.weights}
    history = model.fit(train, epochs=plan.epochs, callbacks=plan.callbacks, verbose=0)
    assert len(history.epoch) == 3
    assert [e["num_unfrozen"] for e in plan.unfreezing.changes] == [0, 2, 3]
    assert float(keras.ops.convert_to_numpy(plan.learning_rate(0))) == pytest.approx(1e-2)
    assert float(keras.ops.convert_to_numpy(plan.learning_rate(2))) == pytest.approx(1e-3)
    after = {v.path: v.numpy() for v in model.weights}
    assert not np.array_equal(before["block1_conv/kernel"], after["block1_conv/kernel"])



def test_head_only_plan_trains_at_a_constant_head_lr():
    # fine_epochs=0: the head LR as a float (what plain `fit` compiles), not a CombinedSchedule
    # switching to `lr` at a step the run never reaches (#32: per-step ops that buy nothing).
    model = tiny_model(compile=False)
    config = tlkit.FineTuneConfig(head_epochs=2, fine_epochs=0, lr=1e-3, patience=None)
    plan = tlkit.fine_tune_plan(model, config, steps_per_epoch=2, verbose=0)
    assert isinstance(plan.learning_rate, float) and plan.learning_rate == pytest.approx(1e-2)
    assert not isinstance(plan.optimizer._learning_rate,
                          keras.optimizers.schedules.LearningRateSchedule)
    x = np.zeros((16, 16, 16, 3), "float32")
    tlkit.fine_tune(model, (x, np.arange(16) % 3), config, batch_size=8, verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-2)  # after its 4 steps

def test_fine_tune_result_records_the_config():
    model = tiny_model()
    x = np.zeros((8, 16, 16, 3), "float32")
    y = np.zeros((8,), "int32")
    result = fine_tune(model, (x, y), tlkit.FineTuneConfig(head_epochs=1, fine_epochs=1),
                       lr_schedule="constant", batch_size=8, verbose=0)
    assert dataclasses.asdict(result.config) == {
        **config_lib.DEFAULTS, "head_epochs": 1, "fine_epochs": 1, "lr_schedule": "constant"}
    with pytest.raises(TypeError, match="did you mean 'lr_schedule'|Did you mean 'lr_schedule'"):
        fine_tune(model, (x, y), lr_shedule="constant")


def test_registries_are_read_by_backbones_get_schema_and_runner(tmp_path):
    from tlkit import registry
    from tlkit.recipes import schema
    from tlkit.runner import data as runner_data

    assert set(schema.SOURCES) == set(registry.DATA_SOURCES.names()) == set(runner_data.ADAPTERS)
    assert {"tiny", "tiny_text", "efficientnet_lite0"} <= set(registry.BACKBONES.names())
    with pytest.raises(RecipeError, match=r"data.path: required when data.source is 'numpy'"):
        Recipe.from_dict({"data": {"source": "numpy"}})
    with pytest.raises(ValueError, match="already registered"):
        registry.register_backbone("tiny", "x:y")
    # A registered name resolves through tlkit.backbones.get; `tiny` writes its SavedModel.
    backbone = tlkit.backbones.get("tiny", folder=str(tmp_path / "tiny"))
    assert (tmp_path / "tiny" / "saved_model.pb").exists()
    assert backbone.input_info.kind == "image"
    # The runner builds the smoke backbone without the test kit.
    from tlkit import runner

    assert _test_kit_users(os.path.dirname(runner.__file__)) == []


def test_the_benchmarks_do_not_use_the_test_kit():
    """Nothing outside the tests imports `tlkit.testing` (the benchmarks' tiny models come from
    `tlkit.backbones.tiny_savedmodels`); import-linter sees only the package, so the scripts
    are read."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert _test_kit_users(os.path.join(root, "benchmarks")) == []


def _test_kit_users(folder) -> list[str]:
    """The `.py` files of `folder` with an import of `tlkit.testing` (there are some)."""
    import glob
    import re

    scripts = glob.glob(os.path.join(folder, "*.py"))
    assert len(scripts) > 5, folder
    pattern = re.compile(r"^\s*(from tlkit\.testing\b|from tlkit import testing\b|"
                         r"import tlkit\.testing\b)", re.MULTILINE)
    users = []
    for path in scripts:
        with open(path) as f:
            if pattern.search(f.read()):
                users.append(os.path.basename(path))
    return sorted(users)


def test_the_recipes_readme_lists_every_setting_as_the_config_declares_it():
    """recipes/README.md's settings table is `config.settings_table()` (one row per
    `FineTuneConfig` field): regenerate it with `python -m tlkit.config --markdown`."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "recipes", "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = "<!-- settings table: python -m tlkit.config --markdown -->\n"
    shown = text.split(start, 1)[1].split("<!-- end settings table -->", 1)[0]
    assert shown == config_lib.settings_table()
    rows = [line for line in shown.splitlines()[2:] if line.startswith("| `")]
    assert [r.split("`")[3] for r in rows] == list(config_lib.FIELDS)
    assert "| `optimizer.layerwise_decay` | `layerwise_decay` |" in shown


def test_cli_lists_the_registries(capsys):
    from tlkit import cli, registry

    assert cli.main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name}: " in out for name in registry.BACKBONES.names())
    assert "sources:" not in out


@pytest.mark.slow
def test_import_contracts_hold():
    """The layers of pyproject.toml's import-linter contracts (library below runner below CLI,
    no cycles); `make test` runs `lint-imports` too, this keeps a plain pytest run honest."""
    import shutil

    lint = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable),
                                                        "lint-imports")
    if not os.path.exists(lint):
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    root = os.path.dirname(os.path.dirname(os.path.abspath(tlkit.__file__)))
    done = subprocess.run([lint, "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0, done.stdout[-3000:]


def test_import_contract_covers_every_library_module():
    """A new top-level module must be named in the library contract, or it goes unchecked."""
    import pkgutil
    import tomllib

    root = os.path.dirname(os.path.dirname(os.path.abspath(tlkit.__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        contracts = tomllib.load(f)["tool"]["importlinter"]["contracts"]
    library = set(contracts[0]["source_modules"])
    application = {"tlkit.runner", "tlkit.cli", "tlkit.testing"}
    top_level = {f"tlkit.{m.name}" for m in pkgutil.iter_modules(tlkit.__path__)}
    assert top_level - application - library == set()


def test_every_public_callback_is_in_tlkit_callbacks():
    import pkgutil

    found = set()
    for info in pkgutil.walk_packages(tlkit.__path__, "tlkit."):
        if info.name.startswith(("tlkit.testing", "tlkit.runner", "tlkit.cli")):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (isinstance(obj, type) and issubclass(obj, keras.callbacks.Callback)
                    and obj.__module__ == info.name and not name.startswith("_")):
                found.add(obj)
    assert found <= {getattr(tlkit.callbacks, n) for n in tlkit.callbacks.__all__}


def test_reusable_checks_fail_when_the_property_breaks(tmp_path):
    from tlkit.testing import frozen_weights_unchanged

    model = tiny_model()
    with pytest.raises(AssertionError, match="block1_conv/kernel"):
        with frozen_weights_unchanged(model, ["block1"]):
            kernel = tlkit.layer_groups(model)[0].variables[0]
            kernel.assign(kernel + 1.0)
    with pytest.raises(AssertionError, match="unknown groups"):
        with frozen_weights_unchanged(model, ["block9"]):
            pass
