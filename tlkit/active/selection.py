"""`select_to_label`: which unlabelled examples to label next, and why.

The model computes, in one pass over the pool, the backbone's pooled embedding (what its head
reads, as `tlkit.fit_linear_probe` does) and the predicted probabilities of every example; a
selection method (`tlkit.active.methods.METHODS`) ranks the pool from them. The embeddings are
L2-normalised, so distance-based methods (`kcenter`, `typiclust`, `uncertainty_herding`) work in
cosine geometry.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from tlkit.active.methods import get_method
from tlkit.active.pool_view import PoolView

DEFAULT_METHOD = "typiclust"
"""The default method: at the low budgets tlkit is for, typical examples of uncovered clusters
(TypiClust) beat uncertainty sampling in the literature; `benchmarks/label_efficiency.py`
measures all methods on Fashion-MNIST."""


@dataclasses.dataclass
class Selection:
    """The examples chosen for labelling, in the order picked.

    Attributes:
        indices: positions in the pool (dataset order).
        scores: the method's score of each pick (higher = wanted more; its unit depends on the
            method: `1 - margin`, entropy, distance, typicality, a random draw).
        why: one line per pick saying why it was chosen.
        method: the method's name.
        paths: the picks' file paths when the pool came from files, else `None`.
    """

    indices: np.ndarray
    scores: np.ndarray
    why: list[str]
    method: str
    paths: list[str] | None = None

    def __len__(self):
        return len(self.indices)

    def rows(self) -> list[dict]:
        """One dict per pick: `index`, `path` (or `None`), `score`, `why`."""
        return [
            {"index": int(i), "path": self.paths[k] if self.paths is not None else None,
             "score": float(self.scores[k]), "why": self.why[k]}
            for k, i in enumerate(self.indices)
        ]

    def to_csv(self, path) -> str:
        """Writes `path,index,score,why` (one row per pick, in order); returns the path."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "index", "score", "why"])
            for row in self.rows():
                writer.writerow([row["path"] or "", row["index"], f"{row['score']:.6g}",
                                 row["why"]])
        os.replace(tmp, path)
        return path


def select(view: PoolView, n: int, method: str = DEFAULT_METHOD, seed: int = 0) -> Selection:
    """Runs selection `method` on precomputed arrays (what `select_to_label` does after the
    model's pass; `simulate` calls it every round).

    Args:
        view: the pool's embeddings / probabilities and the labelled set's embeddings.
        n: examples to pick (at most the pool's size).
        method: a name in `tlkit.active.methods.METHODS`.
        seed: seed of the method's random choices (ties, first picks, k-means).

    Example:
    ```python
    picks = select(PoolView(embeddings=e, labelled=e_lab), 10, method="kcenter")
    ```
    """
    fn = get_method(method)
    n = int(n)
    if n < 1:
        raise ValueError(f"Expected n >= 1 examples to select. Received: n={n}")
    picks = fn(view, min(n, view.size), np.random.default_rng(seed))
    return Selection(np.asarray(picks.indices, dtype="int64"), np.asarray(picks.scores),
                     list(picks.why), method)


def select_to_label(model, pool, n: int, method: str = DEFAULT_METHOD, labelled=None,
                    seed: int = 0, batch_size: int = 32) -> Selection:
    """Chooses the `n` examples of `pool` to label next.

    Args:
        model: a tlkit classification model (`tlkit.build_model` / a run's model).
        pool: the unlabelled examples: a `LabeledData` (its `.unlabeled` pool; its file paths
            come back in `Selection.paths`), an array of inputs, or an unbatched
            `tf.data.Dataset` of `x` (or of `(x, y)`, labels ignored).
        n: examples to pick.
        method: `"random"`, `"margin"`, `"entropy"` (uncertainty of the model's predictions),
            `"kcenter"` (k-center greedy core-set on the embeddings), `"typiclust"`
            (typical examples of uncovered k-means clusters) or `"uncertainty_herding"` (the
            most uncertainty-weighted kernel coverage of the pool); default `"typiclust"`.
        labelled: the examples labelled already (seeds `kcenter`, `typiclust` and
            `uncertainty_herding`: they pick away from them): a `LabeledData` (its train
            split), an array or a dataset.
            Default: `pool`'s train split when `pool` is a `LabeledData`, else none.
        seed: seed of random choices.
        batch_size: batch size of the model's pass over the pool.

    Returns:
        A `Selection`: `indices` into the pool, `scores`, a `why` line per pick, `paths`.

    Raises:
        ValueError: unknown method, `n < 1`, an empty pool, or a `LabeledData` without an
            unlabelled pool.

    Example:
    ```python
    data = tlkit.data.from_image_folder("photos/labelled", unlabeled="photos/new")
    picks = tlkit.select_to_label(model, data, 50, method="typiclust")
    picks.to_csv("to_label.csv")
    ```
    """
    from tlkit.active.model_outputs import pool_inputs, pool_outputs

    get_method(method)  # unknown names fail before the model's pass
    inputs, paths, default_labelled = pool_inputs(pool)
    labelled = default_labelled if labelled is None else labelled
    datasets = [inputs]
    if labelled is not None:
        datasets.append(pool_inputs(labelled, labelled=True)[0])
    outputs = pool_outputs(model, datasets, batch_size)
    embeddings, probabilities = outputs[0]
    if not len(embeddings):
        raise ValueError("The pool is empty: nothing to select from.")
    labelled_embeddings = outputs[1][0] if labelled is not None else None
    from tlkit import heads as heads_lib

    head = heads_lib.find_head(model)
    view = PoolView(_unit(embeddings), probabilities,
                    None if labelled_embeddings is None else _unit(labelled_embeddings),
                    getattr(head, "class_names", None))
    chosen = select(view, n, method, seed)
    if paths is not None:
        chosen.paths = [str(paths[i]) for i in chosen.indices]
    return chosen


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype="float32").reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
