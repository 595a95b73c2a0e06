"""Parameter-efficient fine-tuning: LoRA adapters on any Keras backbone, adapter files, merging,
an int8 base under the adapters (QLoRA-like), and KerasHub's `*.lora.h5` adapter format.

Built on Keras' own `layer.enable_lora(rank, lora_alpha)` (Dense, EinsumDense, Conv) and
`layer.quantize("int8")`. `LoraConfig` and the errors import without TensorFlow; the rest loads
on first use.
"""

from __future__ import annotations

import importlib

from tlkit.peft.config import DEFAULT_ALPHA_RATIO, LORA_LR, LoraConfig
from tlkit.peft.errors import (
    AdapterMismatchError,
    InvalidRankError,
    PeftError,
    TargetsNotFoundError,
    UnsupportedLayersError,
)

_ATTRIBUTES = {
    "LoraReport": "tlkit.peft.adapt",
    "apply": "tlkit.peft.adapt",
    "lora": "tlkit.peft.adapt",
    "lora_layers": "tlkit.peft.adapt",
    "resolve_targets": "tlkit.peft.targets",
    "save_adapters": "tlkit.peft.adapters",
    "load_adapters": "tlkit.peft.adapters",
    "save_keras_hub_lora": "tlkit.peft.keras_hub_lora",
    "MergeReport": "tlkit.peft.merging",
    "merge": "tlkit.peft.merging",
    "quantize_base": "tlkit.peft.quantize",
    "unsupported_for_quantization": "tlkit.peft.quantize",
}


def __getattr__(name: str):
    if name not in _ATTRIBUTES:
        raise AttributeError(f"module 'tlkit.peft' has no attribute {name!r}")
    value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    globals()[name] = value
    return value


def __dir__():
    # PEP 562: tab completion and `help()` see the names that load on first use too.
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DEFAULT_ALPHA_RATIO",
    "LORA_LR",
    "AdapterMismatchError",
    "InvalidRankError",
    "LoraConfig",
    "PeftError",
    "TargetsNotFoundError",
    "UnsupportedLayersError",
    *sorted(_ATTRIBUTES),
]
