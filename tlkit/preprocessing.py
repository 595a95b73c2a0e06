"""In-model image preprocessing derived from a backbone's `InputInfo`.

Models built by tlkit take raw pixels (`[0, 255]`, any size, grey or RGB) and do the backbone's
resize / rescale / normalization inside the graph, so serving and training can't drift apart.
"""

from __future__ import annotations

import keras
from keras import ops

from tlkit.backbones.input_info import InputInfo


@keras.saving.register_keras_serializable(package="tlkit")
class ImagePreprocessing(keras.layers.Layer):
    """Raw `[0, 255]` pixels → what the backbone expects (`InputInfo`).

    Steps: grey → RGB when the backbone needs 3 channels, resize to `image_size` (when set),
    rescale to `value_range`, flip RGB → BGR if needed, subtract `mean` / divide by `std`
    (both in the backbone's channel order).
    """

    def __init__(self, input_info=None, **kwargs):
        kwargs.setdefault("name", "preprocessing")
        super().__init__(**kwargs)
        if isinstance(input_info, dict) or input_info is None:
            input_info = InputInfo.from_config(input_info)
        self.input_info = input_info
        self._resize = (
            keras.layers.Resizing(*input_info.image_size, name="resize", dtype="float32")
            if input_info.image_size
            else None
        )

    def call(self, inputs):
        info = self.input_info
        x = ops.cast(inputs, "float32")
        if info.channels == 3 and x.shape[-1] == 1:
            x = ops.concatenate([x, x, x], axis=-1)
        if self._resize is not None:
            x = self._resize(x)
        low, high = info.value_range
        if (low, high) != (0.0, 255.0):
            x = x * ((high - low) / 255.0) + low
        if info.channel_order == "bgr":  # first: `mean`/`std` are given in the backbone's order
            x = ops.flip(x, axis=-1)
        if info.mean is not None:
            x = x - ops.convert_to_tensor(info.mean, "float32")
        if info.std is not None:
            x = x / ops.convert_to_tensor(info.std, "float32")
        # Preprocessing runs in float32 (pixel arithmetic in [0, 255]); the result goes on in the
        # compute dtype (bfloat16/float16 under a mixed policy), as `compute_output_shape` says.
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        info = self.input_info
        h, w = info.image_size if info.image_size else input_shape[1:3]
        return (input_shape[0], h, w, info.channels)

    def get_config(self):
        config = super().get_config()
        config["input_info"] = self.input_info.get_config()
        return config
