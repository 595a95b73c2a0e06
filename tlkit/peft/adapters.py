"""Adapter files: only the LoRA weights, the head (and trained norms), onto the same base model.

A file is one `.npz` (numpy's format: no pickle, loads anywhere) with the weights and a JSON
record of the `LoraConfig`, each adapted layer's base kernel (path, shape, quantization mode and
a SHA-256 of its values) and each saved weight's position, path and shape. Loading applies the
recorded config to a fresh model first, then refuses, naming the first difference, when the base
model is not the one the adapters were trained on.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from tlkit import groups as groups_lib
from tlkit import trainability
from tlkit._io import atomic_path
from tlkit.peft import adapt as lora_lib
from tlkit.peft.config import LoraConfig
from tlkit.peft.errors import AdapterMismatchError, PeftError

FORMAT = "tlkit.peft.adapters/1"
_META = "__meta__"


def _base_record(layer) -> dict:
    kernel = np.asarray(layer._kernel.numpy())
    return {
        "path": layer._kernel.path.rsplit("/", 1)[0],
        "shape": list(kernel.shape),
        "quantization": layer.quantization_mode,
        "sha256": hashlib.sha256(np.ascontiguousarray(kernel).tobytes()).hexdigest(),
    }


def _saved_variables(model) -> list[tuple[int, object]]:
    """(position in `model.weights`, variable) of the adapters, the head and unfrozen norms."""
    head = {id(v) for g in trainability.layer_groups(model) if g.name == groups_lib.HEAD_GROUP
            for v in g.variables}
    out = []
    for index, v in enumerate(model.weights):
        marked = getattr(v, "_tlkit_always_frozen", None)
        keep = (lora_lib.is_lora_variable(v) or id(v) in head) if marked is None else not marked
        if keep:
            out.append((index, v))
    return out


def _config_of(model) -> LoraConfig:
    config = getattr(model, "_tlkit_lora_config", None)
    if config is not None:
        return config
    layers = lora_lib.lora_layers(model)
    return LoraConfig(rank=int(layers[0].lora_rank), alpha=layers[0].lora_alpha,
                      targets=[_base_record(layer)["path"] for layer in layers])


def save_adapters(model, path) -> str:
    """Writes the adapters, the head and any trained norm parameters of `model` to `path`.

    The file is written to a temporary name and renamed, so an existing file is only replaced
    by a complete one.

    Args:
        model: a model with LoRA (from `tlkit.peft.apply` / `lora`).
        path: the `.npz` file to write.

    Returns:
        `path`.
    """
    layers = lora_lib.lora_layers(model)
    if not layers:
        raise PeftError("The model has no LoRA layers; call `tlkit.peft.lora(model, ...)` first.")
    saved = _saved_variables(model)
    meta = {
        "format": FORMAT,
        "config": _config_of(model).get_config(),
        "base": [_base_record(layer) for layer in layers],
        "num_weights": len(model.weights),
        "weights": [{"index": i, "path": v.path, "shape": list(v.shape)} for i, v in saved],
    }
    arrays = {f"w{i}": np.asarray(v.numpy()) for i, v in saved}
    arrays[_META] = np.array(json.dumps(meta))
    path = os.fspath(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: no ".npz" appended
        np.savez(f, **arrays)
    return path


def _read(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PeftError(f"No adapter file at {path!r}.")
    with np.load(path, allow_pickle=False) as data:
        if _META not in data.files:
            raise PeftError(f"{path!r} is not a tlkit adapter file (no {_META} record).")
        meta = json.loads(str(data[_META]))
        arrays = {k: data[k] for k in data.files if k != _META}
    if meta.get("format") != FORMAT:
        raise PeftError(f"{path!r} has format {meta.get('format')!r}; expected {FORMAT!r}.")
    return meta, arrays


def _check_base(model, meta, path):
    layers = lora_lib.lora_layers(model)
    saved, here = meta["base"], [_base_record(layer) for layer in layers]
    if len(saved) != len(here):
        raise AdapterMismatchError(
            f"{path!r} adapts {len(saved)} layers but this model has {len(here)} matching "
            "layers: the base model differs from the one the adapters were trained on."
        )
    for s, h in zip(saved, here):
        for key, what in (("shape", "kernel shape"), ("quantization", "quantization"),
                          ("sha256", "pretrained weights")):
            if s[key] != h[key]:
                detail = "" if key == "sha256" else f": {s[key]} in the file, {h[key]} here"
                raise AdapterMismatchError(
                    f"{path!r} was trained on a different base model: the {what} of layer "
                    f"{s['path']!r} (here {h['path']!r}) differ{detail}. Load the adapters onto "
                    "a fresh copy of the same pretrained backbone."
                )
    if meta["num_weights"] != len(model.weights):
        raise AdapterMismatchError(
            f"{path!r} was saved from a model with {meta['num_weights']} weights; this one has "
            f"{len(model.weights)} (a different head or backbone)."
        )
    for entry in meta["weights"]:
        v = model.weights[entry["index"]]
        if list(v.shape) != entry["shape"]:
            raise AdapterMismatchError(
                f"{path!r}: weight {entry['path']!r} has shape {entry['shape']}, but this "
                f"model's {v.path!r} has shape {list(v.shape)} (a different head or backbone)."
            )


def load_adapters(model, path):
    """Loads an adapter file onto `model`, a fresh copy of the base model it was trained on.

    A model without LoRA gets the file's `LoraConfig` applied first (same targets, rank, alpha,
    quantization); a model with LoRA must have the same adapted layers.

    Returns:
        The `LoraConfig` of the file.

    Raises:
        AdapterMismatchError: the base model differs (other layers, shapes or pretrained
            weights); the message names the first difference. `model` is left unchanged then
            when it already had LoRA.
    """
    meta, arrays = _read(path)
    config = LoraConfig.from_config(meta["config"])
    if not lora_lib.lora_layers(model):
        try:
            lora_lib.apply(model, config)
        except PeftError as error:
            raise AdapterMismatchError(
                f"{os.fspath(path)!r} does not fit this model (a different base model): {error}"
            ) from None
    _check_base(model, meta, os.fspath(path))
    for entry in meta["weights"]:
        model.weights[entry["index"]].assign(arrays[f"w{entry['index']}"])
    return config
