"""Layer groups: how a backbone is cut into groups, the unit of freezing and layer-wise LRs.

A *group* is a contiguous slice of a backbone, from input to output (stem, stages, blocks,
transformer layers, ...), plus one final group for the new head. For Keras backbones a group
holds layers; for TF-Hub SavedModels (which have no `.layers`) it holds variables selected by
name patterns. Freezing, gradual unfreezing and discriminative learning rates all work on the
same list, like fastai's parameter groups. Which groups train (`set_trainable`, the BatchNorm
policy, summaries) is `tlkit.trainability`, one floor up (it finds the backbone in a model).
"""

from __future__ import annotations

import dataclasses
import re

import keras

from tlkit.config import BN_POLICIES  # noqa: F401  (re-exported: groups.BN_POLICIES)

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
