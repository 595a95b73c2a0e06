"""scikit-learn's 8x8 handwritten digits (BSD licence) as a small offline image data set."""

from __future__ import annotations

import numpy as np

from tlkit.config import TEST_FRACTION, VAL_FRACTION
from tlkit.data.sources.labeled_data import LabeledData
from tlkit.data.sources.numpy_arrays import from_numpy


def digits(
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    image_size=None,
) -> LabeledData:
    """The 1,797 8x8 digit images of `sklearn.datasets.load_digits`, 10 classes.

    Pixel values (0-16 in scikit-learn) are scaled to `[0, 255]`; images are `(8, 8, 1)`.

    Args:
        val_fraction, test_fraction: stratified, seeded held-out fractions per class.
        seed: seed of the split.
        image_size: optional `(height, width)` to resize to.

    Returns:
        A `LabeledData` of kind `"image"`, class names `"0"`..`"9"`.

    Example:
    ```python
    data = tlkit.data.digits(image_size=(32, 32))
    ```
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype("float32") * (255.0 / 16.0)).astype("float32")
    data = from_numpy(
        images[..., np.newaxis],
        bunch.target.astype("int64"),
        class_names=[str(i) for i in range(10)],
        kind="image",
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        name="scikit-learn digits",
    )
    if image_size is None:
        return data
    import tensorflow as tf

    from tlkit.data.sources._images import check_image_size

    size = check_image_size(image_size)
    return data.map(lambda x, y: (tf.image.resize(x, size), y))
