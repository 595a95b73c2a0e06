"""`tlkit suggest RUN --pool DIR -n 50`: which unlabelled files to label next, by a run's model.

The run's model (as served: `load_run_model`) embeds and scores every file of the pool folder
(decoded like the run's training data), `tlkit.select_to_label` picks `n` of them seeded with
the run's labelled training split, and the picks go to `to_label.csv` (`path,index,score,why`)
and `to_label.png` (a contact sheet of the picked images) in the run folder or `output`.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tlkit import active
from tlkit.data.sources import _images, unlabeled_pool
from tlkit.data.sources._class_folders import IMAGE_EXTENSIONS, TEXT_EXTENSIONS
from tlkit.preprocessing import model_image_size
from tlkit.recipes import load_recipe
from tlkit.runner.data import load_data
from tlkit.runner.run_model import load_run_model
from tlkit.runner.rundir import open_run
from tlkit.runner.settings import resolve_settings

logger = logging.getLogger(__name__)

CSV_NAME = "to_label.csv"
SHEET_NAME = "to_label.png"
SHEET_MAX = 100
"""Picks drawn on the contact sheet at most (the CSV lists them all)."""


def suggest_run(path, pool, n: int = 50, method: str = active.DEFAULT_METHOD, output=None,
                seed: int = 0) -> dict:
    """Picks the `n` files of folder `pool` to label next with run `path`'s model.

    Args:
        path: the run folder.
        pool: folder of unlabelled files (images, or `.txt` texts for a text model), read at
            any depth; unreadable files are skipped with a warning.
        n: files to pick.
        method: a `tlkit.active.METHODS` name (default `typiclust`).
        output: folder for `to_label.csv` / `to_label.png` (default: the run folder).
        seed: seed of the method's random choices.

    Returns:
        `{"csv": path, "sheet": path or None (texts), "selection": tlkit.active.Selection}`.

    Example:
    ```python
    suggest_run("runs/flowers", "photos/new", n=50, method="kcenter")
    ```
    """
    active.get_method(method)  # an unknown method fails before any loading
    if int(n) < 1:
        raise ValueError(f"-n: expected an int >= 1 (files to pick), got {n}")
    run = open_run(path)
    recipe = resolve_settings(load_recipe(run.recipe_path))
    labelled_root = recipe.data.path if recipe.data.source == "folder" else None
    model = load_run_model(run)
    data = load_data(recipe.data, recipe.seed).for_model(model)
    if data.kind == "image":
        files = unlabeled_pool.find_files(pool, labelled_root, IMAGE_EXTENSIONS, "image",
                                           key="--pool")
        channels = int(data.input_shape[-1])
        paths, _, sizes = unlabeled_pool.readable_images(files, pool, channels, key="--pool")
        height, width = data.input_shape[:2]
        size = (height, width) if None not in (height, width) else model_image_size(model)
        if size is None and len({sizes[p] for p in paths if p in sizes}) > 1:
            raise ValueError(f"the images in {pool} have different sizes and the run's model "
                             "takes any size; resize them to one size first")
        data = data.with_unlabeled(np.asarray(paths, dtype=object),
                                   _images.decode_fn(channels, size), {"path": paths})
    elif data.kind == "text":
        files = unlabeled_pool.find_files(pool, labelled_root, TEXT_EXTENSIONS, "text",
                                           key="--pool")
        texts, paths, skipped = unlabeled_pool.readable_texts(files, pool, key="--pool")
        if skipped:
            logger.warning("%s: skipped %d unreadable text file(s)", pool, len(skipped))
        data = data.with_unlabeled(np.asarray(texts, dtype=object), None, {"path": paths})
    else:
        raise ValueError(f"tlkit suggest reads image or text files; run {run.path} trained on "
                         f"{data.kind}")
    chosen = active.select_to_label(model, data, n, method=method, seed=seed,
                                    batch_size=recipe.data.batch_size or 32)
    folder = os.fspath(output) if output is not None else run.path
    csv_path = chosen.to_csv(os.path.join(folder, CSV_NAME))
    sheet = _contact_sheet(data, chosen, os.path.join(folder, SHEET_NAME)) \
        if data.kind == "image" else None
    return {"csv": csv_path, "sheet": sheet, "selection": chosen}


def _contact_sheet(data, chosen, path) -> str:
    """The picked images in a grid, titled with rank, score and file name."""
    from tlkit._image_grid import image_grid

    wanted = chosen.indices[:SHEET_MAX]
    source = data.sources["unlabeled"].select(wanted)
    images = [x for x, _ in source.build().as_numpy_iterator()]
    titles = [f"#{k + 1} {chosen.scores[k]:.3g}\n{os.path.basename(chosen.paths[k])[:22]}"
              for k in range(len(wanted))]
    fig = image_grid(images, titles, columns=10, suptitle=f"to label next ({chosen.method})",
                     cell=(1.5, 1.8))
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path
