"""Recipes: loading, validation errors that name key paths, overrides, YAML round trip."""

import glob
import os

import pytest
import yaml

from tlkit.recipes import (
    Recipe,
    RecipeError,
    apply_overrides,
    dump_recipe,
    load_recipe,
    parse_override,
)

RECIPES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "*.yaml")))
MINIMAL = {"backbone": {"name": "tiny"}}


@pytest.mark.parametrize("path", RECIPES, ids=[os.path.basename(p) for p in RECIPES])
def test_every_shipped_recipe_validates_and_round_trips(path):
    recipe = load_recipe(path)
    assert recipe.name == os.path.splitext(os.path.basename(path))[0]
    assert load_recipe(yaml.safe_load(dump_recipe(recipe))) == recipe


def test_expected_recipes_are_shipped():
    names = {os.path.basename(p) for p in RECIPES}
    assert {
        "quickstart.yaml",
        "quickstart_text.yaml",
        "smoke.yaml",
        "tf_flowers_mobilenet_v2.yaml",
        "cats_vs_dogs_efficientnet.yaml",
        "bert_text_classifier.yaml",
    } <= names


def test_defaults_and_types():
    recipe = Recipe.from_dict(MINIMAL)
    assert recipe.backbone.spec == "tiny"
    assert recipe.optimizer.resolved_head_lr == pytest.approx(10 * recipe.optimizer.lr)
    assert recipe.tune is None
    assert recipe.output.export == ["keras"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"optimiser": {}}, "unknown key 'optimiser' at top level; did you mean 'optimizer'?"),
        ({"data": {"split": {}}}, "unknown key 'split' in 'data'; did you mean 'splits'?"),
        (
            {"data": {"splits": {"val_fraction": 1.5}}},
            "data.splits.val_fraction: expected a float in [0, 1), got 1.5",
        ),
        ({"data": {"source": "tfdss"}}, "data.source: expected one of 'tfds', 'folder'"),
        ({"phases": {"head_epochs": "two"}}, "phases.head_epochs: expected an int, got 'two'"),
        ({"phases": {"bn_policy": "train"}}, "phases.bn_policy: expected one of 'frozen'"),
        ({"data": {"per_class": {"trian": 3}}}, "did you mean 'train'?"),
        ({"data": {"image_size": [32, "x"]}}, "data.image_size[1]: expected an int"),
        ({"output": {"export": ["pdf"]}}, "output.export[0]: expected one of 'keras'"),
        ({"head": {"dropout": 1.0}}, "head.dropout: expected a float in [0, 1), got 1.0"),
        ({"data": {"source": "tfds"}}, "data.name: required when data.source is 'tfds'"),
        ({"phases": {"schedule": "table"}}, "phases.table: required"),
        (
            {"tune": {"space": {"optimizer.lrr": {"min": 1, "max": 2}}}},
            "tune.space: unknown parameter 'optimizer.lrr'. Did you mean 'optimizer.lr'?",
        ),
        (
            {"tune": {"max_trials": 0}},
            "tune.max_trials: expected an int >= 1, got 0",
        ),
        ({"cache_features": True}, "unknown key 'cache_features' at top level"),
        ({"seed": 1.5}, "seed: expected an int, got 1.5"),
    ],
)
def test_errors_name_the_key_path_and_what_is_allowed(data, message):
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict({**MINIMAL, **data})
    assert message in str(info.value)


def test_backbone_needs_exactly_one_source():
    with pytest.raises(RecipeError, match="backbone: expected exactly one of 'name'"):
        Recipe.from_dict({"backbone": {"name": "tiny", "path": "/x"}})


def test_float_fields_accept_yaml_1_1_exponents():
    # YAML 1.1 (PyYAML) reads 3e-4 as a string; recipes accept it for float fields.
    recipe = Recipe.from_dict(yaml.safe_load("backbone: {name: tiny}\noptimizer: {lr: 3e-4}"))
    assert recipe.optimizer.lr == pytest.approx(3e-4)


def test_overrides_are_typed_and_validated(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("backbone: {name: tiny}\n")
    recipe = load_recipe(
        path,
        overrides=[
            "optimizer.lr=3e-4",
            "phases.fine_epochs=0",
            "data.per_class.train=5",
            "output.export=[keras, hub]",
        ],
    )
    assert recipe.optimizer.lr == pytest.approx(3e-4)
    assert recipe.phases.fine_epochs == 0
    assert recipe.data.per_class == {"train": 5}
    assert recipe.output.export == ["keras", "hub"]
    with pytest.raises(RecipeError, match="unknown key 'lrr' in 'optimizer'; did you mean 'lr'"):
        load_recipe(path, overrides=["optimizer.lrr=1"])
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipe(path, overrides=["optimizer.lr"])


def test_parse_override():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=x=y") == (["a"], "x=y")
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(RecipeError, match="a.b is 1, not a section"):
        apply_overrides({"a": {"b": 1}}, ["a.b.c=2"])


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe not found"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: {name: tiny\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n")
    with pytest.raises(RecipeError, match="expected a mapping"):
        load_recipe(listing)


def test_safe_load_refuses_python_tags(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(evil)
