"""`PoolView`: what a selection method sees of the unlabelled pool, and `Picks`: what it chose.

Selection methods are pure functions of arrays (the model's embeddings and predicted
probabilities of the pool, the embeddings of the labelled set), so the same method serves
`tlkit.select_to_label` (arrays computed by the model) and `tlkit.active.simulate` (arrays
cached once by a benchmark).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class PoolView:
    """The unlabelled pool as a selection method sees it.

    Args:
        embeddings: `(n, d)` features of the pool (the backbone's pooled output), or `None`.
        probabilities: `(n, classes)` predicted class probabilities of the pool, or `None`.
        labelled: `(m, d)` features of the examples already labelled (may be empty), or `None`.
        class_names: names of the classes, for the "why" of each pick.

    Example:
    ```python
    view = PoolView(embeddings=e, probabilities=p, labelled=e_train, class_names=["a", "b"])
    ```
    """

    embeddings: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    labelled: np.ndarray | None = None
    class_names: list[str] | None = None

    def __post_init__(self):
        sizes = {}
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings, dtype="float32").reshape(
                len(self.embeddings), -1)
            sizes["embeddings"] = len(self.embeddings)
        if self.probabilities is not None:
            self.probabilities = np.asarray(self.probabilities, dtype="float64")
            if self.probabilities.ndim != 2:
                raise ValueError(
                    "Expected `probabilities` of shape (pool size, classes). Received shape "
                    f"{self.probabilities.shape}."
                )
            sizes["probabilities"] = len(self.probabilities)
        if len(set(sizes.values())) > 1:
            raise ValueError(f"The pool's arrays differ in length: {sizes}.")
        if self.labelled is not None:
            self.labelled = np.asarray(self.labelled, dtype="float32")
            self.labelled = self.labelled.reshape(len(self.labelled), -1)
            if self.embeddings is not None and len(self.labelled) and (
                    self.labelled.shape[1] != self.embeddings.shape[1]):
                raise ValueError(
                    f"The labelled set's embeddings have {self.labelled.shape[1]} features; the "
                    f"pool's have {self.embeddings.shape[1]}. Embed both with the same model."
                )

    @property
    def size(self) -> int:
        """Examples in the pool."""
        for array in (self.embeddings, self.probabilities):
            if array is not None:
                return len(array)
        raise ValueError("The pool view holds neither embeddings nor probabilities.")

    def need(self, what: str, method: str) -> np.ndarray:
        """`self.<what>`, or an error naming the method that needs it."""
        value = getattr(self, what)
        if value is None:
            raise ValueError(f"method={method!r} needs the pool's {what}; none were given.")
        return value

    def class_name(self, index: int) -> str:
        names = self.class_names
        return str(names[index]) if names is not None and index < len(names) else str(index)


@dataclasses.dataclass
class Picks:
    """What a selection method chose: pool positions in the order picked, a score per pick
    (higher = wanted more, in the method's own unit) and one line saying why."""

    indices: np.ndarray
    scores: np.ndarray
    why: list[str]
