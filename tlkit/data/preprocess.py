"""`preprocess_for`: resize and channel fixes a backbone needs, as Keras layers.

Only shape fixes: value-range rescaling and normalization happen inside models built by
`tlkit.build_model`, which take raw `[0, 255]` pixels. Use this where images must already have
the backbone's shape before the model, e.g. for `extract_features` on a bare feature model or
to batch images of different sizes. The layers themselves live in `tlkit.preprocessing`, the one
home of image preprocessing.
"""

from __future__ import annotations

import keras

from tlkit.backbones.input_info import InputInfo
from tlkit.preprocessing import ChannelAdapter


def preprocess_for(
    input_info: InputInfo,
    image_size=None,
    crop_to_aspect_ratio: bool = False,
    interpolation: str = "bilinear",
) -> keras.Sequential | keras.layers.Layer:
    """Layers that give images the size and channels a backbone expects (values untouched).

    Args:
        input_info: the backbone's `InputInfo`.
        image_size: `(height, width)` overriding `input_info.image_size`; `None` and no size
            in `input_info` leaves the size alone.
        crop_to_aspect_ratio: center-crop to the target aspect ratio before resizing.
        interpolation: resize interpolation.

    Returns:
        A `keras.Sequential` (resize, then channel fix) working on one image `(h, w, c)` or a
        batch; `keras.layers.Identity` when nothing needs fixing or the backbone is not an
        image backbone (text models tokenize inside themselves). Pixels stay in `[0, 255]`.

    Example:
    ```python
    prep = tlkit.data.preprocess_for(backbone.input_info)
    ds = data.train.map(lambda x, y: (prep(x), y))
    ```
    """
    if isinstance(input_info, dict):
        input_info = InputInfo.from_config(input_info)
    if input_info.kind != "image":
        return keras.layers.Identity(name="preprocess")
    size = image_size if image_size is not None else input_info.image_size
    layers = []
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        layers.append(
            keras.layers.Resizing(
                *size,
                interpolation=interpolation,
                crop_to_aspect_ratio=crop_to_aspect_ratio,
                name="resize",
            )
        )
    if input_info.channels in (1, 3):
        layers.append(ChannelAdapter(input_info.channels, name="channels"))
    if not layers:
        return keras.layers.Identity(name="preprocess")
    return keras.Sequential(layers, name="preprocess")
