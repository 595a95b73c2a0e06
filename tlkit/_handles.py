"""What a backbone string names: a KerasHub preset, a TF-Hub / Kaggle model handle, or a path.

One place for `tlkit.backbones.get`, the hub loader, the recipe preflight and the tuner's recipe
writer. TensorFlow-free.

- KerasHub presets: `keras_hub:<preset>` (tlkit's prefix, before a preset name, a local preset
  folder or a URI) and the URIs KerasHub's `from_preset` reads: `kaggle://owner/model/keras/
  variant[/version]`, `hf://owner/repo`, `modelscope://owner/repo`.
- TF-Hub / Kaggle model handles (TF2 SavedModels, `tensorflow_hub` resolves them):
  `https://tfhub.dev/...`, `https://www.kaggle.com/models/...`, the same without the scheme
  (`tfhub.dev/...`, `kaggle.com/...`, `www.kaggle.com/...`), and other remote URLs (`gs://`).
"""

from __future__ import annotations

import re

KERAS_HUB_PREFIX = "keras_hub:"
KERAS_HUB_SCHEMES = ("kaggle://", "hf://", "modelscope://")
_HUB_HOSTS = ("tfhub.dev/", "kaggle.com/", "www.kaggle.com/")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")


def is_uri(spec: str) -> bool:
    """`scheme://...` (any scheme, `file://` included)."""
    return bool(_URI.match(spec))


def is_keras_hub_handle(spec) -> bool:
    """`keras_hub:<preset>`, or a `kaggle://` / `hf://` / `modelscope://` KerasHub preset URI."""
    return isinstance(spec, str) and spec.startswith((KERAS_HUB_PREFIX, *KERAS_HUB_SCHEMES))


def keras_hub_preset(spec: str) -> str:
    """What `keras_hub.models.Backbone.from_preset` takes: `spec` without `keras_hub:`."""
    return spec[len(KERAS_HUB_PREFIX):] if spec.startswith(KERAS_HUB_PREFIX) else spec


def is_hub_handle(spec) -> bool:
    """A TF-Hub / Kaggle model handle or another remote SavedModel URL (not a KerasHub preset,
    not a local path or `file://` URL)."""
    if not isinstance(spec, str) or is_keras_hub_handle(spec):
        return False
    if is_uri(spec):
        return not spec.startswith("file://")
    return spec.startswith(_HUB_HOSTS)
