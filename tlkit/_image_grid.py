"""A labelled grid of images on a matplotlib `Figure` (no `pyplot`: no backend or global state
is chosen). Shared by `LabeledData.show_batch`, `tlkit.reports.show_results` and the top-losses
plot."""

from __future__ import annotations

import numpy as np


def image_grid(images, titles, columns: int = 4, colors=None, suptitle=None, cell=(2.3, 2.6)):
    """Draws `images` (pixels in `[0, 255]`, `(h, w)`, `(h, w, 1)` or `(h, w, 3)`) in a grid.

    Args:
        images: the images.
        titles: one title per image (may span lines).
        columns: images per row (fewer when there are fewer images).
        colors: optional title colour per image (default black).
        suptitle: optional title of the figure.
        cell: (width, height) of one cell in inches.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure

    n = len(images)
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    fig = Figure(figsize=(cell[0] * columns, cell[1] * rows), dpi=110, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).reshape(-1)
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= n:
            continue
        image = np.asarray(images[i], dtype="float32")
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        ax.imshow(np.clip(image / 255.0, 0, 1), cmap="gray" if image.ndim == 2 else None,
                  vmin=0, vmax=1)
        ax.set_title(titles[i], fontsize=8, color=colors[i] if colors is not None else "black")
    if suptitle:
        fig.suptitle(suptitle)
    return fig
