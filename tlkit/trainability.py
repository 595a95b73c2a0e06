"""Which groups train: `set_trainable`, freezing / unfreezing helpers, the BatchNorm policy and
trainability summaries, on the groups of `tlkit.groups` (how a backbone is cut).
"""

from __future__ import annotations

import keras

from tlkit.backbones.base import Backbone
from tlkit.compat import set_trainable_flag as _set_flag
from tlkit.config import BN_POLICIES
from tlkit.groups import HEAD_GROUP, LayerGroup, group_layers_by_rules, leaf_layers


def find_backbone(model):
    """Returns the tlkit `Backbone` layer inside `model`, or `None`."""
    if isinstance(model, Backbone):
        return model
    for layer in getattr(model, "layers", []):
        if isinstance(layer, Backbone):
            return layer
    return None


def layer_groups(model) -> list[LayerGroup]:
    """The groups of `model` from input to output; the last one is the head.

    Works on models built by `tlkit.build_model` (the backbone's groups + `"head"`), on a tlkit
    `Backbone`, and on any Keras model (groups inferred from layer names, no head group).
    """
    backbone = find_backbone(model)
    if backbone is model:
        return backbone.layer_groups()
    if backbone is None:
        return group_layers_by_rules(leaf_layers(model))
    groups = backbone.layer_groups()
    in_backbone = {id(v) for g in groups for v in g.variables}
    head = LayerGroup(HEAD_GROUP)
    for layer in model.layers:
        if layer is backbone or not layer.weights:
            continue
        head.layers.append(layer)
        head.variables.extend(v for v in layer.weights if id(v) not in in_backbone)
    return groups + ([head] if head.variables else [])


def _batch_norms(layer) -> list:
    """BatchNormalization layers in `layer` (itself or inside a composite layer)."""
    return [
        sl
        for sl in layer._flatten_layers(include_self=True, recursive=True)
        if isinstance(sl, keras.layers.BatchNormalization)
    ]




def has_batch_norm(model) -> bool:
    """Whether the model's backbone (else the model) has BatchNorm: `BatchNormalization` layers
    or SavedModel variables marked as BN gamma/beta. Transformers (MiniLM: LayerNorm) have
    none, so the BN policy means nothing for them."""
    backbone = find_backbone(model) or model
    for layer in backbone._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) or getattr(
            layer, "_has_bn_stats", False  # a SavedModel backbone with BN moving statistics
        ):
            return True
    return any(getattr(v, "_tlkit_bn_affine", False) for v in backbone.weights)


def set_trainable(model, trainable_groups, bn_policy: str = "frozen") -> list[LayerGroup]:
    """Makes exactly `trainable_groups` trainable and freezes every other group.

    Args:
        model: a model built by tlkit, a tlkit `Backbone`, or any Keras model.
        trainable_groups: group names (or `LayerGroup`s) to make trainable.
        bn_policy: what BatchNormalization layers do:
            `"frozen"` (default): always inference mode, moving statistics and affine parameters
            never change, even when their group is trainable (keras#20285, the Keras guide's advice).
            `"train_affine"`: statistics frozen (inference mode), gamma/beta of the trainable
            groups train. A frozen group never trains, whatever the policy (unlike fastai's
            `train_bn=True`, which trains BN in frozen groups too).
            `"update"`: BN layers follow their group; trainable ones use batch statistics and
            update their moving averages.
            The same holds for SavedModel backbones, whose BN gamma/beta are recognised by
            variable name (`from_hub(..., bn_patterns=[...])` for odd names).

    Returns:
        The groups, with their new trainable state.
    """
    if bn_policy not in BN_POLICIES:
        raise ValueError(f"Expected `bn_policy` in {BN_POLICIES}. Received: bn_policy={bn_policy!r}")
    groups = layer_groups(model)
    wanted = {g if isinstance(g, str) else g.name for g in trainable_groups}
    unknown = wanted - {g.name for g in groups}
    if unknown:
        raise ValueError(
            f"Unknown layer group(s) {sorted(unknown)}. The model's groups are "
            f"{[g.name for g in groups]}."
        )
    # Containers first (their setter recurses), then the exact per-layer / per-variable state.
    _set_flag(model, True)
    backbone = find_backbone(model)
    for group in groups:
        flag = group.name in wanted
        layer_vars = set()
        for layer in group.layers:
            layer_vars.update(id(v) for v in layer.weights)
            _set_flag(layer, flag)
            for bn in _batch_norms(layer):
                _set_flag(bn, flag and bn_policy == "update")
                if bn_policy == "train_affine" and flag:
                    for v in (bn.gamma, bn.beta):
                        if v is not None:
                            v.trainable = True
            for v in layer.weights:  # base weights under LoRA adapters (`tlkit.peft`)
                if getattr(v, "_tlkit_always_frozen", False):
                    v.trainable = False
        for v in group.variables:
            if id(v) in layer_vars:
                continue
            # Loose variables (SavedModel backbones): BatchNorm gamma/beta, which the backbone
            # marks by name, follow the same policy as BatchNormalization layers above.
            if getattr(v, "_tlkit_bn_affine", False) and bn_policy != "update":
                v.trainable = flag and bn_policy == "train_affine"
            else:
                v.trainable = flag and not getattr(v, "_tlkit_always_frozen", False)
    if backbone is not None and hasattr(backbone, "_on_trainable_groups_changed"):
        backbone._on_trainable_groups_changed(bn_policy)
    return groups


def group_names(model) -> list[str]:
    return [g.name for g in layer_groups(model)]


def unfreeze_top(model, n: int, bn_policy: str = "frozen") -> list[LayerGroup]:
    """Trains the head plus the top `n` backbone groups; freezes the rest.

    `unfreeze_top(model, 0)` is head-only training; a negative `n` or one at least the number of
    backbone groups unfreezes everything.
    """
    groups = layer_groups(model)
    head = [g.name for g in groups if g.name == HEAD_GROUP]
    body = [g.name for g in groups if g.name != HEAD_GROUP]
    if n < 0 or n >= len(body):
        chosen = body
    else:
        chosen = body[len(body) - n :] if n else []
    return set_trainable(model, chosen + head, bn_policy=bn_policy)


def freeze_backbone(model, bn_policy: str = "frozen") -> list[LayerGroup]:
    """Only the head trains."""
    return unfreeze_top(model, 0, bn_policy=bn_policy)


def unfreeze_all(model, bn_policy: str = "frozen") -> list[LayerGroup]:
    return unfreeze_top(model, -1, bn_policy=bn_policy)


def trainable_summary(model) -> list[dict]:
    """Per-group trainable/total parameter counts, input to output."""
    return [
        {
            "group": g.name,
            "trainable_params": g.num_trainable_params,
            "params": g.num_params,
            "trainable": g.trainable,
        }
        for g in layer_groups(model)
    ]


def format_summary(model) -> str:
    rows = trainable_summary(model)
    width = max([len(r["group"]) for r in rows] + [5])
    lines = [f"{'group':<{width}}  {'trainable':>12}  {'total':>12}"]
    for r in rows:
        lines.append(f"{r['group']:<{width}}  {r['trainable_params']:>12,}  {r['params']:>12,}")
    total_t = sum(r["trainable_params"] for r in rows)
    total = sum(r["params"] for r in rows)
    lines.append(f"{'all':<{width}}  {total_t:>12,}  {total:>12,}")
    return "\n".join(lines)
