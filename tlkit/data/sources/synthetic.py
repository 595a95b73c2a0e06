"""`make_image_folder`: a small generated image folder, for tests, examples and benchmarks."""

from __future__ import annotations

import os

import numpy as np


def make_image_folder(
    path,
    class_names=("circle", "square"),
    per_class: int = 4,
    image_size=(16, 16),
    splits=None,
    image_format: str = "png",
    seed: int = 0,
) -> str:
    """Writes class folders of simple generated images (one bright shape per class).

    Each class draws a different pattern (class `i` lights up band `i` of the image) plus
    noise, so a small model can learn it; files are named `<class>_<split or "all">_<k>.<format>`.

    Args:
        path: folder to create (parents too).
        class_names: one subfolder per name.
        per_class: images per class (per split when `splits` is given).
        image_size: `(height, width)`.
        splits: optional split names (e.g. `("train", "val")`); then the layout is
            `path/<split>/<class>/...`.
        image_format: `"png"`, `"jpg"`, `"bmp"` or `"gif"`.
        seed: seed of the noise.

    Returns:
        `path` as a string.

    Example:
    ```python
    root = tlkit.data.make_image_folder("/tmp/shapes", per_class=10, image_size=(32, 32))
    data = tlkit.data.from_image_folder(root)
    ```
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    height, width = image_size
    n = len(class_names)
    for split in splits or (None,):
        base = os.path.join(path, split) if split else os.fspath(path)
        for c, name in enumerate(class_names):
            folder = os.path.join(base, name)
            os.makedirs(folder, exist_ok=True)
            for k in range(per_class):
                pixels = rng.integers(0, 80, (height, width, 3))
                band = slice(c * height // n, (c + 1) * height // n)
                pixels[band, :, c % 3] += 160
                image = Image.fromarray(pixels.clip(0, 255).astype("uint8"))
                image.save(os.path.join(folder, f"{name}_{split or 'all'}_{k}.{image_format}"))
    return os.fspath(path)
