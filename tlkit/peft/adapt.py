"""`lora` / `apply`: adapt a Keras backbone with LoRA, using Keras' own `layer.enable_lora`.

Keras 3 gives Dense, EinsumDense and Conv layers `enable_lora(rank, lora_alpha)`: it adds two
float32 weights `lora_kernel_a` / `lora_kernel_b` (B starts at zero, so the model's outputs are
unchanged) and freezes the layer's kernel. That freezing alone does not survive tlkit's freezing
by group (`set_trainable` sets every variable of a trainable group), so `apply` also marks each
base variable `_tlkit_always_frozen`, which `tlkit.groups.set_trainable` honours: a trainable
group then trains only its adapters (and its norm parameters with `train_norms=True`), and the
head trains whole (PEFT's `modules_to_save`). Head phase, gradual unfreezing (of adapters, by
group) and layer-wise learning rates of `tlkit.fine_tune` work unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import keras

from tlkit import groups as groups_lib
from tlkit import trainability
from tlkit.peft import targets as targets_lib
from tlkit.peft.config import LORA_LR, LoraConfig
from tlkit.peft.errors import InvalidRankError, PeftError

logger = logging.getLogger("tlkit.peft")

LORA_WEIGHTS = ("lora_kernel_a", "lora_kernel_b")
_NORMS = (keras.layers.LayerNormalization, keras.layers.BatchNormalization)


@dataclasses.dataclass
class LoraReport:
    """What `apply` did.

    Attributes:
        config: the `LoraConfig` applied.
        layers: paths of the layers that got adapters, input to output.
        adapter_params: parameters of the adapters.
        trainable_params: parameters that train with every group unfrozen (adapters + head +
            norms with `train_norms`).
        total_params: every parameter of the model.
    """

    config: LoraConfig
    layers: list
    adapter_params: int
    trainable_params: int
    total_params: int

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / max(self.total_params, 1)


def lora_layers(model) -> list:
    """The layers of `model` with LoRA enabled, input to output."""
    found = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if getattr(layer, "lora_enabled", False)
    ]
    position = {id(v): i for i, v in enumerate(model.weights)}
    return sorted(found, key=lambda layer: position.get(id(layer._kernel), 0))


def is_lora_variable(variable) -> bool:
    return variable.path.rsplit("/", 1)[-1] in LORA_WEIGHTS


def _norm_variables(scope) -> set:
    out = set()
    for layer in scope._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, _NORMS):
            out.update(id(v) for v in (getattr(layer, "gamma", None), getattr(layer, "beta", None))
                       if v is not None)
    return out


def _strategy_scope(model):
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _check_ranks(found, rank):
    too_small = [(c.path, c.max_rank) for c in found if rank > c.max_rank]
    if too_small:
        shown = ", ".join(f"{path} (at most {m})" for path, m in too_small[:5])
        raise InvalidRankError(
            f"LoRA rank {rank} is larger than the dimension of {len(too_small)} target layer(s): "
            f"{shown}. Use rank <= {min(m for _, m in too_small)} or other targets."
        )


def apply(model, config: LoraConfig, bn_policy: str | None = None) -> LoraReport:
    """Adds LoRA adapters to `model` as `config` says and freezes everything else but the head.

    Afterwards every backbone group is trainable, which (for a group) now means its adapters
    only; `tlkit.fine_tune` then runs its head phase and unfreezes the adapters group by group.

    Args:
        model: a built model from `tlkit.build_model` (or any built Keras model: then there is
            no head and only the adapters train).
        config: a `LoraConfig`.
        bn_policy: the BatchNorm policy of the resulting trainable state (see
            `tlkit.groups.set_trainable`). Default `None`: `"train_affine"` with
            `config.train_norms`, else `"frozen"`.

    Returns:
        A `LoraReport`.

    Raises:
        InvalidRankError: the rank exceeds a target layer's dimension.
        TargetsNotFoundError: a target matches no layer (the message lists what exists).
        UnsupportedLayersError: `config.quantize` with target layers Keras can't quantize.
        PeftError: the model already has LoRA layers.
    """
    if not isinstance(config, LoraConfig):
        raise TypeError(f"Expected a `tlkit.peft.LoraConfig`. Received: {type(config).__name__}")
    if not model.built:
        raise PeftError("Build the model (e.g. with `tlkit.build_model`) before adding LoRA.")
    existing = lora_layers(model)
    if existing:
        raise PeftError(
            f"The model already has LoRA on {len(existing)} layer(s) (e.g. {existing[0].name!r}); "
            "apply LoRA once, to a fresh model."
        )
    # Defaults resolved into the config, so that an adapter file keeps its meaning when
    # tlkit's defaults change.
    targets = config.targets or targets_lib.default_targets(targets_lib.candidates(model))
    config = dataclasses.replace(config, alpha=config.resolved_alpha, targets=tuple(targets))
    found = targets_lib.resolve_targets(model, config.targets)
    _check_ranks(found, config.rank)
    if config.quantize is not None:
        from tlkit.peft.quantize import quantize_base

        quantize_base(model, config.quantize, required=[c.layer for c in found])
    alpha = config.alpha
    with _strategy_scope(model):
        for cand in found:
            cand.layer.enable_lora(config.rank, lora_alpha=alpha)
    scope = targets_lib.scope_of(model)
    keep = _norm_variables(scope) if config.train_norms else set()
    for v in scope.weights:
        frozen = not (is_lora_variable(v) or id(v) in keep)
        v._tlkit_always_frozen = frozen
        if frozen:
            v.trainable = False
    model._tlkit_lora_config = config
    if bn_policy is None:
        bn_policy = "train_affine" if config.train_norms else "frozen"
    trainability.unfreeze_all(model, bn_policy=bn_policy)
    model.train_function = model.test_function = model.predict_function = None
    adapter_params = sum(groups_lib._size(v) for v in model.weights if is_lora_variable(v))
    report = LoraReport(
        config=config,
        layers=[c.path for c in found],
        adapter_params=int(adapter_params),
        trainable_params=int(sum(groups_lib._size(v) for v in model.trainable_weights)),
        total_params=int(sum(groups_lib._size(v) for v in model.weights)),
    )
    logger.info(
        "LoRA rank %d (alpha %s) on %d layers; %s of %s parameters trainable (%.2f%%); "
        "adapters want a higher learning rate than full fine-tuning, e.g. lr=%g",
        config.rank, alpha, len(found), f"{report.trainable_params:,}",
        f"{report.total_params:,}", 100 * report.trainable_fraction, LORA_LR,
    )
    return report


def lora(model, rank: int = 4, alpha=None, targets=None, train_norms: bool = False,
         quantize=None) -> LoraReport:
    """`apply(model, LoraConfig(rank, alpha, targets, train_norms, quantize))`.

    Example:
    ```python
    model = tlkit.build_model(tlkit.backbones.get("minilm_l6"), num_classes=3)
    report = tlkit.peft.lora(model, rank=4)   # every Dense / EinsumDense, alpha 8
    tlkit.fine_tune(model, train, val, epochs=(1, 2), lr=tlkit.peft.LORA_LR)
    tlkit.peft.save_adapters(model, "adapters.npz")       # a few MB
    ```
    """
    return apply(model, LoraConfig(rank=rank, alpha=alpha, targets=targets,
                                   train_norms=train_norms, quantize=quantize))
