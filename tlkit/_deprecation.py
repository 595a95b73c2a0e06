"""Old public names kept for one release: reading one warns (`DeprecationWarning`) and gives
the object under its new name.

Example (in a module that renamed `plan` to `distribution_plan`):
```python
__getattr__ = renamed(__name__, {"plan": "distribution_plan"})
```
"""

from __future__ import annotations

import sys
import warnings


def renamed(module: str, names: dict[str, str]):
    """A module-level `__getattr__` that serves each old name of `names` (`{old: new}`) as
    the module's `new`, with a `DeprecationWarning` naming the new spelling.

    Args:
        module: the module's `__name__`.
        names: `{old name: new name}`.
    """

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new = names[name]
        warnings.warn(
            f"{module}.{name} is deprecated and will be removed in the next release: use "
            f"{module}.{new}", DeprecationWarning, stacklevel=2)
        return getattr(sys.modules[module], new)

    return __getattr__
