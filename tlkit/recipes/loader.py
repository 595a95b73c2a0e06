"""Reading and writing recipes: safe YAML, `--set a.b=c` overrides, YAML dumps."""

from __future__ import annotations

import os

import yaml

from tlkit.recipes.schema import Recipe, RecipeError, _number, check_required


def parse_override(text: str) -> tuple[list[str], object]:
    """Parses `"a.b=c"` into `(["a", "b"], value)`; the value is read as a YAML scalar.

    `3e-4` (a string for YAML 1.1) becomes a float; `[1, 2]` a list; `null` None.

    Raises:
        RecipeError: no `=`, or an empty key.
    """
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. optimizer.lr=3e-4")
    key, raw = text.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise RecipeError(f"--set {text!r}: expected a dotted key such as optimizer.lr")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise RecipeError(f"--set {text!r}: value is not valid YAML ({err})") from None
    if isinstance(value, str) and _number(value) is not None and not value.strip().isdigit():
        value = _number(value)
    return parts, value


def apply_overrides(data: dict, overrides) -> dict:
    """Returns a copy of the raw recipe dict `data` with `overrides` (`"a.b=c"` strings) set.

    Missing intermediate sections are created; validation (afterwards) reports unknown keys
    with their full path.
    """
    import copy

    data = copy.deepcopy(data)
    for text in overrides or ():
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise RecipeError(f"--set {text!r}: {where} is {child!r}, not a section")
            node = child
        node[parts[-1]] = value
    return data


def read_yaml(path) -> dict:
    """`yaml.safe_load` of a file, with errors that name the file (and line)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"recipe not found: {path}")
    if os.path.isdir(path):
        raise RecipeError(f"{path}: is a folder; expected a recipe .yaml file")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise RecipeError(f"{path}:{where}: not valid YAML ({problem})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: expected a mapping of recipe sections, got {type(data).__name__}"
        )
    return data


def load_recipe(source, overrides=(), required=("backbone",)) -> Recipe:
    """Loads and validates a recipe.

    Args:
        source: a path to a YAML file, or a raw dict.
        overrides: `"key.path=value"` strings applied before validation (`--set`).
        required: sections that must be given (`()` for commands that only read `data`).

    Returns:
        A validated `Recipe`. Its `name` defaults to the file name without extension.

    Raises:
        FileNotFoundError: no such file.
        RecipeError: invalid YAML, unknown key, wrong type or bad value (the key path is named).

    Example:
    ```python
    recipe = load_recipe("recipes/smoke.yaml", overrides=["phases.fine_epochs=0"])
    ```
    """
    if isinstance(source, dict):
        data, label = dict(source), None
    else:
        data, label = read_yaml(source), os.fspath(source)
        data.setdefault("name", os.path.splitext(os.path.basename(label))[0])
    data = apply_overrides(data, overrides)
    try:
        recipe = Recipe.from_dict(data)
        check_required(recipe, required)
        return recipe
    except RecipeError as err:
        if label is None:
            raise
        raise RecipeError(f"{label}: {err}") from None


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML text (what `load_recipe` reads back into an equal recipe)."""
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False, default_flow_style=False)
