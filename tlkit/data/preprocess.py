"""`preprocess_for`: resize and channel fixes a backbone needs, as Keras layers.

Only shape fixes: value-range rescaling and normalization happen inside models built by
`tlkit.build_model`, which take raw `[0, 255]` pixels. Use this where images must already have
the backbone's shape before the model, e.g. for `extract_features` on a bare feature model or
to batch images of different sizes.
"""

from __future__ import annotations

import keras
from keras import ops

from tlkit.backbones.input_info import InputInfo


@keras.saving.register_keras_serializable(package="tlkit")
class ChannelAdapter(keras.layers.Layer):
    """Converts images to `channels` channels: grey → RGB (repeat), RGB → grey (luma), RGBA → RGB.

    Args:
        channels: output channels, 1 or 3.

    Example:
    ```python
    rgb = ChannelAdapter(3)(grey_images)  # (n, h, w, 1) -> (n, h, w, 3)
    ```
    """

    def __init__(self, channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ValueError(f"Expected `channels` 1 or 3. Received: channels={channels}")
        self.channels = int(channels)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        have = x.shape[-1]
        if have is None:
            raise ValueError(
                "ChannelAdapter needs a known channel count (last dimension); got shape "
                f"{x.shape}. Set the image shape first (e.g. decode with fixed channels)."
            )
        if have == self.channels:
            return x
        if have == 4:
            x = x[..., :3]
            have = 3
        if have == 1 and self.channels == 3:
            return ops.concatenate([x, x, x], axis=-1)
        if have == 3 and self.channels == 1:
            weights = ops.convert_to_tensor([0.2989, 0.5870, 0.1140], "float32")
            return ops.sum(x * weights, axis=-1, keepdims=True)
        if have == self.channels:
            return x
        raise ValueError(f"Cannot convert {have} channels to {self.channels}.")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self):
        config = super().get_config()
        config["channels"] = self.channels
        return config


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
