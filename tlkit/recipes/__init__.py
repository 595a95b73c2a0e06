"""Declarative recipes: a whole transfer-learning run described in YAML.

`load_recipe(path, overrides=[...])` reads a file with `yaml.safe_load` and validates it into a
typed `Recipe`; `dump_recipe(recipe)` writes it back. `tlkit train RECIPE` runs one.
"""

from tlkit.recipes.loader import apply_overrides, dump_recipe, load_recipe, parse_override
from tlkit.recipes.schema import (
    BackboneConfig,
    DataConfig,
    DistributeConfig,
    HeadConfig,
    OptimizerConfig,
    OutputConfig,
    PhasesConfig,
    Recipe,
    RecipeError,
    SplitsConfig,
    TuneConfig,
    check_required,
)

__all__ = [
    "BackboneConfig",
    "DataConfig",
    "DistributeConfig",
    "HeadConfig",
    "OptimizerConfig",
    "OutputConfig",
    "PhasesConfig",
    "Recipe",
    "RecipeError",
    "SplitsConfig",
    "TuneConfig",
    "apply_overrides",
    "check_required",
    "dump_recipe",
    "load_recipe",
    "parse_override",
]
