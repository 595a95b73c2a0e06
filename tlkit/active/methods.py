"""The registry of selection methods: name -> `(PoolView, n, rng) -> Picks`.

Example:
```python
from tlkit.active.methods import METHODS, register_method

@register_method("least_confidence")
def least_confidence(view, n, rng): ...
```
"""

from __future__ import annotations

from collections.abc import Callable

from tlkit.active.kcenter import kcenter
from tlkit.active.random_sampling import random
from tlkit.active.typiclust import typiclust
from tlkit.active.uncertainty import entropy, margin
from tlkit.active.uncertainty_herding import uncertainty_herding

METHODS: dict[str, Callable] = {}
"""Selection methods by name (`select_to_label(method=...)`, `tlkit suggest --method`)."""


def register_method(name: str, override: bool = False):
    """Decorator registering a selection method `(PoolView, n, rng) -> Picks` under `name`."""

    def add(fn):
        if name in METHODS and not override:
            raise ValueError(f"Selection method {name!r} is already registered; pass "
                             "override=True to replace it.")
        METHODS[name] = fn
        return fn

    return add


def get_method(name: str) -> Callable:
    """The method registered as `name`, or one line naming the methods there are."""
    if name not in METHODS:
        raise ValueError(f"Unknown selection method {name!r}; expected one of "
                         f"{', '.join(sorted(METHODS))}.")
    return METHODS[name]


for _name, _fn in (("random", random), ("margin", margin), ("entropy", entropy),
                   ("kcenter", kcenter), ("typiclust", typiclust),
                   ("uncertainty_herding", uncertainty_herding)):
    register_method(_name)(_fn)
