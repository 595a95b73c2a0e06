"""LoRA adapters of a KerasHub backbone in KerasHub's own file format (`*.lora.h5`), so that a
KerasHub user loads them with `backbone.load_lora_weights(path)`.

KerasHub's format (`keras_hub.models.Backbone.save_lora_weights`): an H5 file with
`lora/rank` and, for each adapted layer, `lora/<index>/lora_kernel_a` and `.../lora_kernel_b`,
where `<index>` is the layer's position among the backbone's layers that have weights
(`backbone._flatten_layers(include_self=False)`). The reader enables LoRA itself when the
backbone has none (`enable_lora(rank)`: its default layer names, `query_dense`, `value_dense`,
`query`, `value`, and scale 1), then reads the layers it adapted. So:

- tlkit's scale `alpha / rank` is folded into `lora_kernel_b` (KerasHub's layers get
  `lora_alpha = rank`): the loaded backbone computes what tlkit's did;
- the file holds the backbone's adapters only (not tlkit's head);
- KerasHub adapts *every* layer of a name. A file whose layers are exactly those KerasHub's
  defaults select loads with a bare `load_lora_weights`; otherwise the KerasHub user first calls
  `backbone.enable_lora(rank, target_layer_names=...)` with the names this writer returns. A
  tlkit LoRA that adapts some but not all layers of a name cannot be expressed in the format
  and is refused.

Example:
```python
tlkit.peft.lora(model, rank=4, targets=["query", "value"])   # KerasHub's default layers
... # fine-tune
record = tlkit.peft.save_keras_hub_lora(model, "adapters.lora.h5")
# A KerasHub user:
backbone = keras_hub.models.Backbone.from_preset("bert_tiny_en_uncased")
backbone.load_lora_weights("adapters.lora.h5")
```
"""

from __future__ import annotations

import os

import keras
import numpy as np

from tlkit._extras import require
from tlkit._io import atomic_path
from tlkit.peft import adapt as lora_lib
from tlkit.peft.errors import PeftError

SUFFIX = ".lora.h5"
"""The file name ending KerasHub requires."""
KERAS_HUB_DEFAULT_NAMES = ("query_dense", "value_dense", "query", "value")
"""`keras_hub.models.Backbone.default_lora_layer_names()` (what a bare `load_lora_weights`
adapts)."""


def _keras_hub_backbone(model):
    """The `keras_hub.models.Backbone` inside `model` (a tlkit model, or the backbone itself)."""
    keras_hub = require("keras_hub", "Saving LoRA in KerasHub's format")
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras_hub.models.Backbone):
            return layer
    raise PeftError("KerasHub's LoRA format is for KerasHub backbones; this model has none "
                    "(use tlkit.peft.save_adapters).")


def _selected(layers, names) -> list[int]:
    """The indices KerasHub's `enable_lora(rank, target_layer_names=names)` adapts."""
    return [i for i, layer in enumerate(layers)
            if layer.name in names and hasattr(layer, "enable_lora")]


def save_keras_hub_lora(model, path) -> dict:
    """Writes the LoRA adapters of `model`'s KerasHub backbone in KerasHub's format.

    Args:
        model: a tlkit model (or a `keras_hub.models.Backbone`) with LoRA from
            `tlkit.peft.lora` / `apply`, all of it inside the KerasHub backbone.
        path: the file to write; must end in `.lora.h5` (KerasHub's rule).

    Returns:
        `{"path", "rank", "num_layers", "target_layer_names", "loads_with_defaults"}`:
        with `loads_with_defaults` False, a KerasHub user calls
        `backbone.enable_lora(rank, target_layer_names=target_layer_names)` before
        `backbone.load_lora_weights(path)`.

    Raises:
        PeftError: no LoRA, LoRA outside the KerasHub backbone, mixed ranks, a name whose
            layers are only partly adapted, or a wrong file name.
        MissingExtraError: keras-hub is not installed.

    Example:
    ```python
    save_keras_hub_lora(model, "adapters.lora.h5")
    ```
    """
    path = os.fspath(path)
    if not path.endswith(SUFFIX):
        raise PeftError(f"KerasHub LoRA files must end in {SUFFIX!r}; got {path!r}.")
    adapted = lora_lib.lora_layers(model)
    if not adapted:
        raise PeftError("The model has no LoRA layers; call `tlkit.peft.lora(model, ...)` first.")
    backbone = _keras_hub_backbone(model)
    layers = [layer for layer in backbone._flatten_layers(include_self=False) if layer.weights]
    index = {id(layer): i for i, layer in enumerate(layers)}
    outside = [layer.name for layer in adapted if id(layer) not in index]
    if outside:
        raise PeftError(f"LoRA layers {outside[:5]} are outside the KerasHub backbone; "
                        "KerasHub's format holds the backbone's adapters only.")
    ranks = {int(layer.lora_rank) for layer in adapted}
    if len(ranks) != 1:
        raise PeftError(f"KerasHub's format has one LoRA rank; the layers have {sorted(ranks)}.")
    rank = ranks.pop()
    indices = sorted(index[id(layer)] for layer in adapted)
    names = sorted({layer.name for layer in adapted})
    if _selected(layers, names) != indices:
        extra = [layers[i].name for i in set(_selected(layers, names)) - set(indices)]
        raise PeftError(
            "KerasHub adapts every layer of a name, but this LoRA leaves out some layers named "
            f"{sorted(set(extra))}; target whole names (e.g. targets=['query', 'value']) to "
            "save in KerasHub's format.")
    with atomic_path(path) as tmp:  # the writer KerasHub's own save_lora_weights uses
        store = keras.src.saving.saving_lib.H5IOStore(tmp, mode="w")
        try:
            store.make("lora")["rank"] = rank
            for i in indices:
                layer = layers[i]
                scale = float(layer.lora_alpha) / rank  # KerasHub's layers: lora_alpha = rank
                entry = store.make(f"lora/{i}")
                entry["lora_kernel_a"] = np.asarray(layer.lora_kernel_a.numpy())
                entry["lora_kernel_b"] = np.asarray(layer.lora_kernel_b.numpy()) * scale
        finally:
            store.close()
    return {
        "path": path,
        "rank": rank,
        "num_layers": len(indices),
        "target_layer_names": names,
        "loads_with_defaults": _selected(layers, KERAS_HUB_DEFAULT_NAMES) == indices,
    }
