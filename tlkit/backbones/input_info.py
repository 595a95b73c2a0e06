"""What a backbone expects at its input, so models add the right preprocessing themselves."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class InputInfo:
    """Describes a backbone's input.

    Args:
        kind: `"image"`, `"text"` or `"features"` (any dense tensor).
        image_size: `(height, width)` the backbone was trained at, or `None` if any size works.
        channels: number of image channels.
        value_range: `(low, high)` pixel range the backbone expects (for example `(0, 1)`,
            `(-1, 1)` or `(0, 255)`). Models built by tlkit take raw `[0, 255]` pixels and rescale.
        mean: optional per-channel mean subtracted after rescaling to `value_range`.
        std: optional per-channel std divided after subtracting `mean`.
        dtype: dtype of the raw input tensor (`"float32"`, `"string"`, ...).
        channel_order: `"rgb"` or `"bgr"` (Caffe-style backbones such as ResNet50 / VGG16).
    """

    kind: str = "image"
    image_size: tuple[int, int] | None = None
    channels: int = 3
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    dtype: str = "float32"
    channel_order: str = "rgb"

    def __post_init__(self):
        if self.kind not in ("image", "text", "features"):
            raise ValueError(
                f"Expected `kind` in ('image', 'text', 'features'). Received: kind={self.kind!r}"
            )
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(
                f"Expected `channel_order` 'rgb' or 'bgr'. Received: {self.channel_order!r}"
            )
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        for field in ("mean", "std"):
            value = getattr(self, field)
            if value is not None:
                object.__setattr__(self, field, tuple(float(v) for v in value))

    def get_config(self) -> dict:
        config = dataclasses.asdict(self)
        for key, value in config.items():
            if isinstance(value, tuple):
                config[key] = list(value)
        return config

    @classmethod
    def from_config(cls, config: dict | None) -> InputInfo:
        return cls(**(config or {}))
