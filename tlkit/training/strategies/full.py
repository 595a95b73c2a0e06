"""`full`: the head phase, then every backbone group at once (`unfreeze` is ignored)."""

from __future__ import annotations

from tlkit.training.strategies.gradual import Gradual


class Full(Gradual):
    """The head phase, then all groups train together.

    Example:
    ```python
    tlkit.fine_tune(model, train, val, strategy="full", fine_epochs=3)
    ```
    """

    name = "full"

    def fit_config(self, config):
        return config.replace(unfreeze="all")
