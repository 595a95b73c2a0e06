"""Layer groups: the unit of freezing, unfreezing and layer-wise learning rates.

A *group* is a contiguous slice of a backbone, from input to output (stem, stages, blocks,
transformer layers, ...), plus one final group for the new head. For Keras backbones a group
holds layers; for TF-Hub SavedModels (which have no `.layers`) it holds variables selected by
name patterns. Freezing, gradual unfreezing and discriminative learning rates all work on the
same list, like fastai's parameter groups.
"""

from __future__ import annotations

import dataclasses
import re

import keras

from tlkit.config import BN_POLICIES

HEAD_GROUP = "head"

# Ordered (pattern, group name template) rules matched against leaf layer names. The first rule
# that matches names the group; the template may use the pattern's groups (`\1`).
DEFAULT_GROUP_RULES: tuple[tuple[str, str], ...] = (
    (r"^(stem)", r"\1"),
    (r"^(embeddings?|token_embedding|position_embedding|segment_embedding)", "embeddings"),
    (r"^(transformer_layer_\d+)", r"\1"),
    (r"^(block_?\d+)[a-z]?_", r"\1"),  # EfficientNet block1a_, MobileNetV2 block_1_, VGG block1_
    (r"^(stage_?\d+)", r"\1"),
    (r"^(conv\d+)_block", r"\1"),  # ResNet conv2_block1_...
    (r"^(top|head_conv|pooled_dense|pooler)", "top"),
)


@dataclasses.dataclass
class LayerGroup:
    """A named slice of a model that is frozen, unfrozen and given a learning rate together.

    Attributes:
        name: group name, e.g. `"block3"` or `"head"`.
        layers: Keras layers wholly inside the group (leaf layers that own weights).
        variables: every variable of the group (the layers' and any loose SavedModel variables).
    """

    name: str
    layers: list = dataclasses.field(default_factory=list)
    variables: list = dataclasses.field(default_factory=list)

    @property
    def num_params(self) -> int:
        return int(sum(_size(v) for v in self.variables))

    @property
    def num_trainable_params(self) -> int:
        return int(sum(_size(v) for v in self.variables if v.trainable))

    @property
    def trainable(self) -> bool:
        return any(v.trainable for v in self.variables)


def _size(variable) -> int:
    n = 1
    for d in variable.shape:
        n *= int(d)
    return n


def leaf_layers(layer) -> list:
    """The units of a model that own weights, flattened through nested models, in model order.

    Nested `keras.Model`s are opened; any other layer (a Conv2D, or a composite layer such as a
    transformer block) is one unit, named by its own name.
    """
    sublayers = getattr(layer, "layers", None) if isinstance(layer, keras.Model) else None
    if not sublayers:
        return [layer] if layer.weights else []
    out = []
    if layer._trainable_variables or layer._non_trainable_variables:
        out.append(layer)
    for sl in sublayers:
        out.extend(leaf_layers(sl))
    return out


def group_layers_by_rules(layers, rules=DEFAULT_GROUP_RULES, max_groups: int = 8) -> list[LayerGroup]:
    """Splits leaf layers into contiguous named groups.

    Layers are named by the first matching rule; a layer no rule names joins the group before it
    (or the first group). When the rules name fewer than two groups, the layers are split into
    `max_groups` chunks of similar parameter count instead.
    """
    compiled = [(re.compile(p), t) for p, t in rules]
    names = []
    for layer in layers:
        name = None
        for pattern, template in compiled:
            m = pattern.match(layer.name)
            if m:
                name = m.expand(template)
                break
        names.append(name)
    named = [n for n in names if n is not None]
    if len(set(named)) < 2:
        return _chunk_groups(layers, max_groups)
    groups: list[LayerGroup] = []
    current = None
    for layer, name in zip(layers, names):
        if name is None:
            name = current if current is not None else (named[0])
        if not groups or groups[-1].name != name:
            if any(g.name == name for g in groups):  # non-contiguous repeat: keep order simple
                name = groups[-1].name
            else:
                groups.append(LayerGroup(name))
        current = name
        groups[-1].layers.append(layer)
        groups[-1].variables.extend(layer.weights)
    return groups


def _chunk_groups(layers, n: int) -> list[LayerGroup]:
    n = max(1, min(n, len(layers)))
    total = sum(sum(_size(v) for v in layer.weights) for layer in layers) or 1
    groups = [LayerGroup(f"group{i}") for i in range(n)]
    seen = 0
    for layer in layers:
        size = sum(_size(v) for v in layer.weights)
        index = min(n - 1, int(n * seen / total))
        groups[index].layers.append(layer)
        groups[index].variables.extend(layer.weights)
        seen += size
    return [g for g in groups if g.layers]


def find_backbone(model):
    """Returns the tlkit `Backbone` layer inside `model`, or `None`."""
    from tlkit.backbones.base import Backbone

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


def _set_flag(layer, value: bool) -> None:
    """`layer.trainable = value` for `layer` and every sublayer, even where already equal.

    Keras 3's TensorFlow layers skip assigning an attribute its current object
    (`KerasAutoTrackable.__setattr__` short-circuits `self.x = self.x`), so `layer.trainable =
    True` on a layer that is already `True` neither recurses into sublayers nor resets variable
    flags. Calling the property setter on every layer avoids that.
    """
    for sublayer in layer._flatten_layers(include_self=True, recursive=True):
        type(sublayer).trainable.fset(sublayer, value)




def set_trainable(model, trainable_groups, bn_policy: str = "frozen") -> list[LayerGroup]:
    """Makes exactly `trainable_groups` trainable and freezes every other group.

    Args:
        model: a model built by tlkit, a tlkit `Backbone`, or any Keras model.
        trainable_groups: group names (or `LayerGroup`s) to make trainable.
        bn_policy: what BatchNormalization layers do:
            `"frozen"` (default): always inference mode, moving statistics and affine parameters
            never change, even when their group is trainable (keras#20285, the Keras guide's advice).
            `"train_affine"`: statistics frozen (inference mode) but gamma/beta train everywhere,
            also in frozen groups (fastai's `train_bn=True`).
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
                if bn_policy == "train_affine":
                    for v in (bn.gamma, bn.beta):
                        if v is not None:
                            v.trainable = True
        for v in group.variables:
            if id(v) in layer_vars:
                continue
            # Loose variables (SavedModel backbones): BatchNorm gamma/beta, which the backbone
            # marks by name, follow the same policy as BatchNormalization layers above.
            if getattr(v, "_tlkit_bn_affine", False) and bn_policy != "update":
                v.trainable = bn_policy == "train_affine"
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
