"""`show_results`: a labelled grid of a model's predictions on examples of a split (fastai's
`learn.show_results`)."""

from __future__ import annotations

import numpy as np


def show_results(model, data, split: str = "test", n: int = 9, columns: int = 3, batch_size=32):
    """The first `n` images of `split` titled with their true and predicted class (green when
    right, red when wrong) and the predicted probability.

    Args:
        model: a trained classifier on raw inputs (softmax output), e.g. from `tlkit.load`.
        data: a `tlkit.data.LabeledData` of images.
        split: `"test"` (default), `"val"` or `"train"`.
        n: how many images (default 9).
        columns: images per row.
        batch_size: prediction batch size.

    Returns:
        A `matplotlib.figure.Figure`.

    Raises:
        ValueError: the data are not images.

    Example:
    ```python
    tlkit.reports.show_results(model, data).savefig("results.png")
    ```
    """
    if data.kind != "image":
        raise ValueError(
            f"show_results draws images; this data is kind={data.kind!r}. For texts use "
            "`tlkit.reports.top_losses(model, data).to_pandas()`."
        )
    from tlkit._image_grid import image_grid

    x, y = data.for_model(model).take(split, n)
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    predicted = probs.argmax(axis=-1)
    names = data.class_names
    titles = [
        f"true {names[t]}\npred {names[p]} {probs[i, p]:.2f}"
        for i, (t, p) in enumerate(zip(y, predicted))
    ]
    colors = ["tab:green" if t == p else "tab:red" for t, p in zip(y, predicted)]
    return image_grid(x, titles, columns, colors=colors, suptitle=f"Predictions ({split} split)")
