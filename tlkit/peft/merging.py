"""`merge`: folds LoRA adapters into the base kernels, leaving plain Keras layers for export."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from tlkit.inference import model_inputs
from tlkit.optimizers.util import clone_optimizer
from tlkit.peft import adapt as lora_lib

logger = logging.getLogger("tlkit.peft")


@dataclasses.dataclass
class MergeReport:
    """What `merge` did.

    Attributes:
        layers: paths of the merged layers.
        max_abs_diff: the largest |output difference| between the adapted and the merged model
            on the check inputs (`None` without inputs).
    """

    layers: list
    max_abs_diff: float | None = None


def _merge_layer(layer) -> None:
    if layer.quantization_mode in ("int8", "int4"):
        # Keras' own merge for quantized kernels (what `save_own_variables` writes): dequantize,
        # add the update, requantize.
        kernel, scale, _ = layer._get_kernel_with_merged_lora()
        layer._kernel.assign(kernel)
        layer.kernel_scale.assign(scale)
    else:
        layer._kernel.assign(layer.kernel)  # `kernel` is base + (alpha / rank) * A @ B
    # Keras has no `disable_lora`: drop the adapter weights (`Layer.__delattr__` untracks them)
    # and the flags, so the layer computes and serializes as a plain layer again.
    del layer.lora_kernel_a
    del layer.lora_kernel_b
    layer.lora_enabled = False
    layer.lora_rank = None
    layer.lora_alpha = None


def _recompile_without_adapter_state(model) -> None:
    """A built optimizer holds slots for the deleted adapter weights, and `model.save` would
    write them (and fail to load them back): recompile with a fresh copy of it."""
    optimizer = getattr(model, "optimizer", None)
    config = getattr(getattr(model, "_compile_config", None), "config", None)
    if optimizer is None or not optimizer.built or not config:
        return
    with model.distribute_strategy.scope():
        model.compile(**{**dict(config), "optimizer": clone_optimizer(optimizer)})


def merge(model, inputs=None, batch_size: int = 32) -> MergeReport:
    """Merges every LoRA adapter of `model` into its layer's kernel, in place.

    The merged model has no LoRA weights: `model.save`, `tlkit.export.export_model` and the
    TFLite converters see plain Dense / EinsumDense / Conv layers.

    Args:
        model: a model with LoRA layers.
        inputs: a batch (or array) to compare the adapted and merged outputs on; the largest
            |difference| is in the report. Default `None`: no comparison.
        batch_size: for `predict` on `inputs`. Default 32.

    Returns:
        A `MergeReport`.
    """
    layers = lora_lib.lora_layers(model)
    if inputs is not None:
        inputs = model_inputs(inputs)
    before = None if inputs is None else model.predict(inputs, batch_size=batch_size, verbose=0)
    paths = []
    for layer in layers:
        paths.append(layer._kernel.path.rsplit("/", 1)[0])
        _merge_layer(layer)
    model.train_function = model.test_function = model.predict_function = None
    _recompile_without_adapter_state(model)
    report = MergeReport(layers=paths)
    if before is not None:
        after = model.predict(inputs, batch_size=batch_size, verbose=0)
        report.max_abs_diff = float(np.max(np.abs(np.asarray(after) - np.asarray(before))))
    logger.info("merged LoRA into %d layers; max |diff| %s", len(paths), report.max_abs_diff)
    return report
