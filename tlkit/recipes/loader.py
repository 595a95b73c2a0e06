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
        value = safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())[:200]
        raise RecipeError(f"--set {key.strip()}: value is not valid YAML ({problem})") from None
    except RecursionError:
        raise RecipeError(f"--set {key.strip()}: value nested too deeply") from None
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


MAX_RECIPE_BYTES = 1 << 20
"""A recipe file larger than this (1 MiB) is refused unread (recipes are a few kB)."""

MAX_ALIASES = 100
"""YAML aliases (`*name`) a recipe may use."""

MAX_NODES = 100_000
"""YAML nodes a recipe may expand to, aliases expanded ("billion laughs" is ~10^9)."""


class _BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses documents expanding beyond `MAX_NODES` nodes (aliases
    counted each time they are used) or using more than `MAX_ALIASES` aliases, before any
    Python object is built: an alias bomb costs microseconds, not gigabytes."""

    def compose_document(self):
        node = super().compose_document()
        _check_expansion(node, self)
        return node

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._tlkit_aliases = getattr(self, "_tlkit_aliases", 0) + 1
            if self._tlkit_aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(
                    f"more than {MAX_ALIASES} YAML aliases (*name) at line {mark.line + 1}: "
                    "refused (a recipe needs few, if any)")
        return super().compose_node(parent, index)


def _check_expansion(root, loader) -> None:
    sizes: dict[int, int] = {}

    def size(node):  # nodes once expanded; each node's size counted once (memo)
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias counts once (no infinite loop)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        sizes[id(node)] = total = min(total, MAX_NODES + 1)
        return total

    if root is not None and size(root) > MAX_NODES:
        raise yaml.YAMLError(
            f"the document expands to more than {MAX_NODES} values (YAML aliases repeating "
            "anchors): refused")


def safe_load(stream):
    """`yaml.safe_load` with the bounds of `_BoundedLoader` (aliases, expanded size)."""
    loader = _BoundedLoader(stream)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_text(path) -> str:
    """The recipe file's text; a file that is not UTF-8 (e.g. UTF-16, Latin-1) is one line."""
    with open(path, "rb") as f:
        raw = f.read(MAX_RECIPE_BYTES + 1)
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: larger than {MAX_RECIPE_BYTES >> 20} MiB: refused (a recipe "
                          "is a few kB of YAML)")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:4096]:
        raise RecipeError(f"{path}: is UTF-16 (or binary), not UTF-8 text: save the recipe as "
                          "UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise RecipeError(f"{path}: line {line}: not UTF-8 text (byte 0x{raw[err.start]:02x}; "
                          "Latin-1 or another encoding?): save the recipe as UTF-8") from None


def read_yaml(path) -> dict:
    """`yaml.safe_load` of a file, with errors that name the file (and line); files over
    `MAX_RECIPE_BYTES`, not UTF-8, or expanding beyond `MAX_NODES` (alias bombs) are refused."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"recipe not found: {path}")
    if os.path.isdir(path):
        raise RecipeError(f"{path}: is a folder; expected a recipe .yaml file")
    text = _read_text(path)
    try:
        data = safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(f"{path}:{where} not valid YAML ({problem})") from None
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply to be a recipe") from None
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
