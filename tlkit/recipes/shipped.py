"""The recipes shipped with tlkit, and starter recipe files written from them (`tlkit init`).

The recipes live in the top-level `recipes/` folder of the source tree; `tlkit/recipes/starters`
links to it, and the wheel carries a copy (`[tool.setuptools.package-data]` in pyproject.toml),
so a `pip install tlkit` user has the same recipes to start from as a checkout.
"""

from __future__ import annotations

import os
import re
from importlib import resources

import yaml

from tlkit.recipes.schema import RecipeError

_FOLDER = "starters"


def shipped_recipes() -> dict[str, str]:
    """The shipped recipes: name (file name without `.yaml`) -> the file's path, sorted.

    Example:
    ```python
    sorted(shipped_recipes())   # ['bert_text_classifier', ..., 'smoke', ...]
    ```
    """
    folder = resources.files("tlkit.recipes") / _FOLDER
    if not folder.is_dir():
        return {}
    return {
        entry.name[: -len(".yaml")]: str(entry)
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    }


def describe(path: str) -> str:
    """The recipe's `description:` line ('' when it has none)."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    return str(data.get("description") or "") if isinstance(data, dict) else ""


def write_starter(name: str, output: str | None = None, force: bool = False) -> str:
    """Copies the shipped recipe `name` to `output` (default `./<name>.yaml`) and returns it.

    The copy's `name:` (the run folder's name) becomes the output file's name, so
    `tlkit train <output>` trains into `runs/<that name>/`.

    Args:
        name: a shipped recipe (see `shipped_recipes()`).
        output: the file to write (default: `<name>.yaml` in the current folder).
        force: replace an existing file (default: refuse, so nothing written is lost).

    Raises:
        RecipeError: unknown `name`, or `output` exists and `force` is False.

    Example:
    ```python
    path = write_starter("smoke")      # ./smoke.yaml; then: tlkit train smoke.yaml
    ```
    """
    recipes = shipped_recipes()
    if name not in recipes:
        raise RecipeError(
            f"no shipped recipe {name!r}; shipped: {', '.join(recipes) or 'none (broken install)'}"
        )
    output = output or f"{name}.yaml"
    if os.path.exists(output) and not force:
        raise RecipeError(f"{output} exists; pass --force to replace it, or --output another file")
    with open(recipes[name], encoding="utf-8") as f:
        text = f.read()
    stem = os.path.splitext(os.path.basename(output))[0]
    text = re.sub(r"(?m)^name:.*$", f"name: {stem}", text, count=1)
    folder = os.path.dirname(output)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    return output
