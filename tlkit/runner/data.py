"""A recipe's `data` section -> a `tlkit.data.LabeledData`: one loader per source, looked up by name.

The source's loader comes from `tlkit.registry.DATA_SOURCES`; `ADAPTERS` turns the recipe's
`data` keys into its arguments. The
`per_class` budget is then applied with `tlkit.data.subsample` (nested across budgets).
"""

from __future__ import annotations

import tlkit.data as tdata
from tlkit import registry


def _fashion_mnist(load, cfg, seed, size):
    return load(image_size=size, seed=seed, val_fraction=cfg.splits.val_fraction,
                               path=cfg.path, **cfg.options)


def _digits(load, cfg, seed, size):
    s = cfg.splits
    return load(val_fraction=s.val_fraction, test_fraction=s.test_fraction, seed=seed,
                        image_size=size, **cfg.options)


def _tweets(load, cfg, seed, size):
    s = cfg.splits
    return load(val_fraction=s.val_fraction, test_fraction=s.test_fraction, seed=seed,
                        path=cfg.path, **cfg.options)


def _folder(load, cfg, seed, size):
    s = cfg.splits
    return load(cfg.path, image_size=size, val_fraction=s.val_fraction,
                                   test_fraction=s.test_fraction, seed=seed,
                                   class_names=cfg.class_names, unlabeled=cfg.unlabeled,
                                   **cfg.options)


def _csv(load, cfg, seed, size):
    s = cfg.splits
    return load(cfg.path, cfg.x_col, cfg.y_col, kind=cfg.kind or "image",
                          class_names=cfg.class_names, val_fraction=s.val_fraction,
                          test_fraction=s.test_fraction, seed=seed, image_size=size,
                          **cfg.options)


def _tfds(load, cfg, seed, size):
    s = cfg.splits
    return load(cfg.name, split=s.train or "train[:80%]", val_split=s.val or "auto",
                           test_split=s.test or "auto", image_size=size, **cfg.options)


def _numpy(load, cfg, seed, size):
    """`data.source: numpy`: an `.npz` with `x`, `y`; optionally `x_val`/`y_val`,
    `x_test`/`y_test` (explicit splits) and `meta_<column>` (per-example metadata of `x`)."""
    import numpy as np

    with np.load(cfg.path, allow_pickle=False) as arrays:
        a = {k: arrays[k] for k in arrays.files}
    for key in ("x", "y"):
        if key not in a:
            raise ValueError(f"data.path: {cfg.path} has no array {key!r} (found {sorted(a)})")
    extra = {
        split: (a[f"x_{split}"], a[f"y_{split}"]) for split in ("val", "test") if f"x_{split}" in a
    }
    metadata = {k[len("meta_") :]: v for k, v in a.items() if k.startswith("meta_")}
    if cfg.unlabeled:
        extra["x_unlabeled"] = _unlabeled_array(cfg.unlabeled)
    return load(
        a["x"], a["y"], class_names=cfg.class_names, kind=cfg.kind,
        val_fraction=cfg.splits.val_fraction, test_fraction=cfg.splits.test_fraction, seed=seed,
        metadata=metadata or None, name=cfg.path, **extra, **cfg.options,
    )


def _unlabeled_array(path):
    """`data.unlabeled` of `source: numpy`: an `.npy` array, or the `x` of an `.npz`."""
    import os

    import numpy as np

    if not os.path.isfile(path):
        raise FileNotFoundError(f"data.unlabeled: file not found: {path!r} (an .npy or .npz)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"data.unlabeled: cannot read {path!r} as .npy / .npz ({err})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        if "x" not in loaded.files:
            raise ValueError(f"data.unlabeled: {path} has no array 'x' (found {sorted(loaded.files)})")
        return loaded["x"]


ADAPTERS = {
    "tfds": _tfds,
    "folder": _folder,
    "csv": _csv,
    "numpy": _numpy,
    "fashion_mnist": _fashion_mnist,
    "digits": _digits,
    "tweets": _tweets,
}
"""`data.source` -> `(loader, cfg, seed, image_size) -> LabeledData`: how a recipe's `data`
keys become the arguments of the source's loader (registered in `tlkit.registry.DATA_SOURCES`)."""


def load_data(cfg, seed: int):
    """The `LabeledData` of a recipe's `data` section (`tlkit.recipes.DataConfig`)."""
    size = cfg.image_size
    size = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
    entry = registry.DATA_SOURCES.get(cfg.source)
    data = ADAPTERS[entry.name](entry.load(), cfg, seed, size)
    budget = cfg.per_class
    if budget is not None:
        budget = {"train": budget} if isinstance(budget, int) else budget
        for split, n in budget.items():
            if split in data.splits:
                data = tdata.subsample(data, n, seed=seed, split=split, allow_fewer=True)
    return data


def recipe_distribution(recipe) -> dict:
    """`tlkit.distribute.strategy_scope` arguments of a recipe's `distribute` section."""
    cfg = recipe.distribute
    return {"strategy": cfg.strategy, "mixed_precision": cfg.mixed_precision,
            "scale_lr": cfg.scale_lr}
