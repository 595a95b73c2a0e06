"""`library_versions`: the versions a run was made with, for metrics.json and the model card."""

from __future__ import annotations

import platform
from importlib import metadata

# {key in the record: distribution name}
_DISTRIBUTIONS = {"tensorflow": "tensorflow", "keras": "keras", "keras_hub": "keras-hub"}


def library_versions() -> dict:
    """`{"tlkit", "tensorflow", "keras", "keras_hub", "python"}` version strings (`None` for a
    library that is not installed)."""
    from tlkit import __version__

    versions = {"tlkit": __version__}
    for key, dist in _DISTRIBUTIONS.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    versions["python"] = platform.python_version()
    return versions


def format_versions(versions: dict) -> str:
    """`tlkit 0.1.0, TensorFlow 2.21.0, Keras 3.15.0, KerasHub 0.32.0, Python 3.11.7`."""
    names = {"tlkit": "tlkit", "tensorflow": "TensorFlow", "keras": "Keras",
             "keras_hub": "KerasHub", "python": "Python"}
    return ", ".join(f"{names.get(k, k)} {v}" for k, v in versions.items() if v)
