"""Which layers of a model LoRA targets: by layer group, layer type or name pattern."""

from __future__ import annotations

import dataclasses
import math
import re

import keras

from tlkit import groups as groups_lib
from tlkit import trainability
from tlkit.peft.errors import TargetsNotFoundError

# Attention projections KerasHub and Keras' MultiHeadAttention name this way: a model with both
# is treated as a transformer.
ATTENTION_NAMES = ("query", "value")
# A transformer's default targets: every linear layer (attention query / key / value / output
# and the feed-forward pair), not only query / value (the LoRA paper's and KerasHub's choice):
# see docs/benchmarks/peft.md for the sweep that chose it.
TRANSFORMER_DEFAULT = ("Dense", "EinsumDense")
POINTWISE_CONV = "pointwise_conv"


@dataclasses.dataclass
class Candidate:
    """A layer that supports `enable_lora`, with where it sits in the model."""

    layer: keras.layers.Layer
    path: str  # e.g. "transformer_layer_0/self_attention/query" (its kernel's path, less "/kernel")
    group: str  # its layer group, e.g. "transformer_layer_0"

    @property
    def max_rank(self) -> int:
        """The largest useful rank: the smaller side of the kernel seen as a matrix."""
        shape = [int(d) for d in _base_kernel(self.layer).shape]
        return min(math.prod(shape[:-1]), shape[-1])


def _base_kernel(layer):
    return layer._kernel  # the stored kernel (`layer.kernel` adds the LoRA update once enabled)


def _supports_lora(layer) -> bool:
    return hasattr(layer, "enable_lora") and hasattr(layer, "_kernel") and not list(
        layer._flatten_layers(include_self=False)
    ) and not isinstance(layer, keras.layers.Embedding)


def _layer_path(layer) -> str:
    path = _base_kernel(layer).path
    return path.rsplit("/", 1)[0] if "/" in path else layer.name


def scope_of(model):
    """The part of `model` adapters go into: its tlkit backbone, else the whole model."""
    return trainability.find_backbone(model) or model


def candidates(model) -> list[Candidate]:
    """Every layer of `model`'s backbone that supports LoRA, in model order, with its group."""
    scope = scope_of(model)
    group_of = {}
    for group in trainability.layer_groups(model):
        if group.name == groups_lib.HEAD_GROUP:
            continue
        for unit in group.layers:
            for layer in unit._flatten_layers(include_self=True, recursive=True):
                group_of.setdefault(id(layer), group.name)
    out = [
        Candidate(layer, _layer_path(layer), group_of.get(id(layer), ""))
        for layer in scope._flatten_layers(include_self=False, recursive=True)
        if _supports_lora(layer)
    ]
    position = {id(v): i for i, v in enumerate(scope.weights)}  # input to output
    return sorted(out, key=lambda c: position.get(id(_base_kernel(c.layer)), 0))


def _is_pointwise(layer) -> bool:
    kernel_size = getattr(layer, "kernel_size", None)
    return isinstance(layer, keras.layers.Conv2D) and not isinstance(
        layer, keras.layers.DepthwiseConv2D
    ) and kernel_size is not None and all(int(k) == 1 for k in kernel_size)


def _matches(target: str, cand: Candidate, group_names: set) -> bool:
    if target in group_names:
        return cand.group == target
    if target == POINTWISE_CONV:
        return _is_pointwise(cand.layer)
    if target == type(cand.layer).__name__:
        return True
    try:
        pattern = re.compile(target)
    except re.error:
        return False
    return bool(pattern.fullmatch(cand.layer.name) or pattern.fullmatch(cand.path))


def default_targets(found: list[Candidate]) -> tuple[str, ...]:
    """Every Dense / EinsumDense layer in a transformer (a model with `query` and `value`
    layers), else the 1x1 convolutions."""
    names = {c.layer.name for c in found}
    if set(ATTENTION_NAMES) <= names:
        return TRANSFORMER_DEFAULT
    return (POINTWISE_CONV,)


def resolve_targets(model, targets=None) -> list[Candidate]:
    """The LoRA-capable layers `targets` selects (see `LoraConfig.targets`), in model order.

    Raises:
        TargetsNotFoundError: a target matches no layer; the message lists the groups, the
            layer types and the layer names that could be targeted.
    """
    found = candidates(model)
    if targets is None:
        targets = default_targets(found)
    elif isinstance(targets, str):
        targets = (targets,)
    group_names = {c.group for c in found if c.group}
    chosen, unmatched = [], []
    for target in targets:
        hits = [c for c in found if _matches(target, c, group_names)]
        if not hits:
            unmatched.append(target)
        chosen.extend(c for c in hits if all(c.layer is not d.layer for d in chosen))
    if unmatched or not chosen:
        groups = [g for g in dict.fromkeys(c.group for c in found) if g]
        types = sorted({type(c.layer).__name__ for c in found})
        names = sorted({c.layer.name for c in found})
        shown = names[:40] + ([f"... ({len(names) - 40} more)"] if len(names) > 40 else [])
        raise TargetsNotFoundError(
            f"LoRA targets {unmatched or list(targets)} match no layer that supports LoRA. "
            f"Use layer groups {groups}, layer types {types + [POINTWISE_CONV]}, or name "
            f"patterns over the layer names {shown}."
        )
    order = {id(c.layer): i for i, c in enumerate(found)}
    return sorted(chosen, key=lambda c: order[id(c.layer)])
