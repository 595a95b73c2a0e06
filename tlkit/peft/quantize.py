"""An int8 base under LoRA adapters (QLoRA-like) with Keras' own `Model.quantize`.

Keras 3 quantizes Dense, EinsumDense and Embedding layers to int8 (per-channel abs-max weights,
dynamically quantized inputs) and lets `enable_lora` add float32 adapters over the int8 kernel
(keras PR 19356: about half the peak training memory). Convolutions and other layers stay
float; a LoRA target Keras cannot quantize is an `UnsupportedLayersError` listing them.
"""

from __future__ import annotations

import logging

import keras

from tlkit.peft import targets as targets_lib
from tlkit.peft.errors import PeftError, UnsupportedLayersError

logger = logging.getLogger("tlkit.peft")

QUANTIZE_MODES = ("int8",)


def _quantizable(layer) -> bool:
    """Whether Keras implements `quantize` for this layer (the base `Layer.quantize` raises)."""
    return type(layer).quantize is not keras.layers.Layer.quantize and not list(
        layer._flatten_layers(include_self=False)
    )


def unsupported_for_quantization(layers) -> list[str]:
    """`"path (Type)"` for each of `layers` Keras cannot quantize."""
    out = []
    for layer in layers:
        if not _quantizable(layer):
            kernel = getattr(layer, "_kernel", None)
            path = kernel.path.rsplit("/", 1)[0] if kernel is not None else layer.name
            out.append(f"{path} ({type(layer).__name__})")
    return out


def quantize_base(model, mode: str = "int8", required=None) -> list[str]:
    """Quantizes every layer of `model`'s backbone that Keras can quantize, in place.

    Args:
        model: a built model (its tlkit backbone is quantized; the head stays float).
        mode: `"int8"`.
        required: layers that must be quantizable (the LoRA targets). Default `None`.

    Returns:
        The names of the quantized layers.

    Raises:
        UnsupportedLayersError: some `required` layers can't be quantized; lists them.
    """
    if mode not in QUANTIZE_MODES:
        raise PeftError(f"Expected a quantization mode in {QUANTIZE_MODES}. Received: {mode!r}")
    unsupported = unsupported_for_quantization(required or [])
    if unsupported:
        shown = ", ".join(unsupported[:10]) + (" ..." if len(unsupported) > 10 else "")
        raise UnsupportedLayersError(
            f"Keras cannot quantize {len(unsupported)} of the LoRA target layers to {mode}: "
            f"{shown}. Keras {keras.__version__} quantizes Dense, EinsumDense and Embedding "
            "layers; target only those, or drop `quantize`."
        )
    scope = targets_lib.scope_of(model)
    chosen = [
        layer
        for layer in scope._flatten_layers(include_self=False, recursive=True)
        if _quantizable(layer) and layer.weights and layer.quantization_mode is None
    ]
    ids = {id(layer) for layer in chosen}
    with model.distribute_strategy.scope():
        model.quantize(mode, filters=lambda layer: id(layer) in ids)
    logger.info("quantized %d backbone layers to %s", len(chosen), mode)
    return [layer.name for layer in chosen]
