"""In-model image preprocessing derived from a backbone's `InputInfo`.

The one home of image preprocessing layers: `ChannelAdapter` (channel conversion) and
`ImagePreprocessing`. Models built by tlkit take raw pixels (`[0, 255]`, any size, grey or RGB) and do the backbone's
resize / rescale / normalization inside the graph, so serving and training can't drift apart.
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
        self.built = True  # no weights

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
        # One channel conversion for all of tlkit (grey -> RGB, RGB -> grey, RGBA -> RGB).
        self._channels = ChannelAdapter(input_info.channels, name="channels", dtype="float32") if (
            input_info.channels in (1, 3)) else None
        self._resize = (
            keras.layers.Resizing(*input_info.image_size, name="resize", dtype="float32")
            if input_info.image_size
            else None
        )

    def build(self, input_shape):
        # The sublayers hold no weights; building them here keeps Keras from warning "build()
        # was called on layer 'preprocessing' ... unbuilt state" at every load.
        if self._channels is not None:
            self._channels.build(input_shape)
        if self._resize is not None:
            self._resize.build((*tuple(input_shape)[:-1], self.input_info.channels))
        self.built = True

    def call(self, inputs):
        info = self.input_info
        x = ops.cast(inputs, "float32")
        if self._channels is not None and x.shape[-1] not in (None, info.channels):
            x = self._channels(x)
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


def model_image_size(model) -> tuple[int, int] | None:
    """The `(height, width)` a model takes its images at: the static size of its image input
    when it has one, else the backbone's `InputInfo.image_size` held by its
    `ImagePreprocessing` layer (which resizes to it); `None` when the model takes any size.

    The one place that decides the size images of different sizes are batched at for a model
    (`LabeledData.for_model`, used by `tlkit.fine_tune` and the recipe runner, and
    `tlkit.predict`).

    Example:
    ```python
    model = tlkit.build_model("efficientnet_lite0", num_classes=3)
    model_image_size(model)  # (224, 224)
    ```
    """
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    if len(shape) == 4 and None not in shape[1:3]:
        return int(shape[1]), int(shape[2])
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, ImagePreprocessing):
            size = layer.input_info.image_size
            return tuple(int(s) for s in size) if size else None
    return None
