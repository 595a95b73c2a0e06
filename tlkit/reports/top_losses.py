"""Top losses: the examples a model gets most wrong (fastai's `plot_top_losses`), cross-linked
with the data audit's duplicates and flagged when the label itself looks wrong."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tlkit.reports._predictions import as_predictions
from tlkit.reports.neighbours import agrees, model_neighbour_votes

# A top-loss example is flagged as a suspected wrong label when the model predicts another
# class with at least this probability AND at least `NEIGHBOUR_AGREEMENT` (80%) of its
# `NEIGHBOURS` (10) nearest training examples carry that class (tlkit.reports.neighbours).
# Confidence alone flagged most top losses and was often wrong on planted label noise, even at
# probability 0.99, so without neighbour votes nothing is flagged (docs/benchmarks/other.md).
SUSPECT_LABEL_PROBABILITY = 0.9
_EPS = 1e-12


@dataclasses.dataclass
class TopLosses:
    """The `n` examples with the highest cross-entropy loss, highest first.

    Attributes:
        split: the split they come from.
        index: positions in the split `(n,)`.
        true, predicted: class names.
        probability: the predicted class' probability.
        true_probability: the true class' probability.
        loss: `-log(true_probability)`.
        notes: per example, findings such as "exact duplicate of train item ..." or "suspected
            wrong label".
        inputs: the examples themselves (images `(n, h, w, c)` in `[0, 255]`, or texts), when
            known.
        refs: per example, its name (file path or `#index`).
    """

    split: str
    index: np.ndarray
    true: list[str]
    predicted: list[str]
    probability: np.ndarray
    true_probability: np.ndarray
    loss: np.ndarray
    notes: list[list[str]]
    refs: list[str]
    inputs: object = None

    def __len__(self):
        return len(self.index)

    def to_records(self) -> list[dict]:
        """One JSON-ready dict per example (no inputs)."""
        return [
            {
                "index": int(self.index[i]),
                "ref": self.refs[i],
                "true": self.true[i],
                "predicted": self.predicted[i],
                "probability": float(self.probability[i]),
                "true_probability": float(self.true_probability[i]),
                "loss": float(self.loss[i]),
                "notes": list(self.notes[i]),
            }
            for i in range(len(self))
        ]

    def __getitem__(self, i) -> dict:
        """Row `i` as a dict (`to_records()[i]`)."""
        return self.to_records()[i]

    def to_pandas(self):
        """The records as a `pandas.DataFrame` (pandas is optional: not a tlkit dependency)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "TopLosses.to_pandas needs pandas (pip install pandas); to_records() gives the "
                "same rows as dicts"
            ) from None
        return pd.DataFrame(self.to_records())

    def plot(self, columns: int = 4):
        """A `matplotlib.figure.Figure`: an image grid titled `true / predicted / probability /
        loss`, or for texts a table of the same."""
        from tlkit.reports.plots import plot_top_losses

        return plot_top_losses(self, columns=columns)


def top_losses_from_predictions(
    y_true,
    probs,
    class_names,
    n: int = 16,
    split: str = "test",
    refs=None,
    audit=None,
    neighbour_votes=None,
) -> TopLosses:
    """Top losses from precomputed probabilities (what `top_losses` and the report use).

    Args:
        y_true: labels `(m,)`.
        probs: probabilities `(m, k)`.
        class_names: the `k` class names.
        n: how many examples (default 16).
        split: the split's name, for the audit cross-links.
        refs: per example of the split, the name the audit uses (file path, else `#index`).
        audit: optional `AuditReport` (or its `to_dict()`): exact / near duplicates of a
            top-loss example in another split are noted.
        neighbour_votes: evidence for "suspected wrong label": per example, how many of its
            nearest training examples carry each class (`tlkit.reports.neighbours`). Either an
            `(m, k)` array over the split, or a function of the top losses' indices returning
            their `(n, k)` rows (or `None`), so only those are embedded, e.g.
            `functools.partial(model_neighbour_votes, model, data, split)`. Without it no
            label is suspected (confidence alone is mostly wrong about it).

    Returns:
        A `TopLosses` (without inputs).

    Example:
    ```python
    losses = top_losses_from_predictions(y, probs, ["cat", "dog"], n=8,
                                         neighbour_votes=votes)  # votes: (len(y), 2)
    ```
    """
    y_true, probs = as_predictions(y_true, probs)
    if not len(y_true):
        raise ValueError(f"The {split} split has no examples: no top losses to show.")
    true_p = probs[np.arange(len(y_true)), y_true]
    losses = -np.log(np.clip(true_p, _EPS, 1.0))
    k = min(int(n), len(y_true))
    # argpartition then a stable sort of the k: O(m) for 10k+ examples.
    top = np.argpartition(-losses, k - 1)[:k]
    top = top[np.argsort(-losses[top], kind="stable")]
    predicted = probs[top].argmax(axis=1)
    refs = [str(r) for r in refs] if refs is not None else [f"#{i}" for i in range(len(y_true))]
    links = _duplicate_links(audit, split)
    votes = _top_votes(neighbour_votes, top, len(y_true))
    notes = []
    for row, (i, p) in enumerate(zip(top, predicted)):
        found = list(links.get(refs[i], []))
        if (
            votes is not None
            and p != y_true[i]
            and probs[i, p] >= SUSPECT_LABEL_PROBABILITY
            and agrees(votes[row], p)
        ):
            found.append(
                f"suspected wrong label: predicted {class_names[p]} with probability "
                f"{probs[i, p]:.2f}, and {votes[row, p]} of its {votes[row].sum()} nearest "
                f"training examples are {class_names[p]}"
            )
        notes.append(found)
    return TopLosses(
        split=split,
        index=top,
        true=[str(class_names[y]) for y in y_true[top]],
        predicted=[str(class_names[p]) for p in predicted],
        probability=probs[top, predicted],
        true_probability=true_p[top],
        loss=losses[top],
        notes=notes,
        refs=[refs[i] for i in top],
    )


def _top_votes(neighbour_votes, top, m):
    """The neighbour votes of the `top` examples, `(n, k)`, or `None`."""
    if neighbour_votes is None:
        return None
    if callable(neighbour_votes):
        votes = neighbour_votes(top)
        return None if votes is None else np.asarray(votes)
    votes = np.asarray(neighbour_votes)
    if votes.ndim != 2 or len(votes) != m:
        raise ValueError(
            f"Expected neighbour_votes of shape (examples, classes) = ({m}, k). "
            f"Received: shape {votes.shape}"
        )
    return votes[top]


def _duplicate_links(audit, split) -> dict[str, list[str]]:
    """`{ref: ["exact duplicate of train item X", ...]}` for the split's items that the audit
    found duplicated in another split."""
    if audit is None:
        return {}
    report = audit.to_dict() if hasattr(audit, "to_dict") else audit
    links: dict[str, list[str]] = {}

    def link(items, what):
        for a in items:
            if a["split"] != split:
                continue
            for b in items:
                if b["split"] != split:
                    links.setdefault(a["item"], []).append(
                        f"{what} of {b['split']} item {b['item']}"
                    )

    for group in report.get("exact_duplicates", []):
        link(group["items"], "exact duplicate")
    for pair in report.get("near_duplicates", []):
        link([pair["a"], pair["b"]], f"near duplicate (cosine {pair['similarity']:.3f})")
    return links


def split_refs(data, split: str) -> list[str]:
    """The names the audit gives the examples of `split`: file paths where the loader kept
    them (`metadata[split]["path"]`), else `#index`."""
    paths = (data.metadata.get(split) or {}).get("path")
    n = len(data.split_labels(split))
    if paths is not None and len(paths) == n:
        return [p.decode() if isinstance(p, bytes) else str(p) for p in paths]
    return [f"#{i}" for i in range(n)]


def gather_inputs(data, split: str, indices) -> np.ndarray:
    """The raw inputs at `indices` of `split`, in that order (picked before decoding when the
    loader allows, see `LabeledData.select`)."""
    indices = np.asarray(indices, dtype="int64")
    if not len(indices):
        return np.zeros((0,))
    picked = data.select(split, indices)
    xs = [x for x, _ in picked.split(split).as_numpy_iterator()]
    if split not in data.sources:  # a filtered stream keeps dataset order: put it in ours
        order = np.argsort(np.argsort(indices))
        xs = [xs[i] for i in order]
    return np.stack(xs)


def top_losses(
    model, data, split: str = "test", n: int = 16, batch_size: int = 64, audit=None,
    neighbour_votes: bool = True,
):
    """The `n` examples of `data`'s `split` with the highest loss under `model`.

    Args:
        model: a trained classifier on raw inputs (softmax output).
        data: a `tlkit.data.LabeledData`.
        split: `"test"` (default), `"val"` or `"train"`.
        n: how many examples (default 16).
        batch_size: prediction batch size.
        audit: optional `AuditReport` of `data`, for duplicate cross-links.
        neighbour_votes: `True` (default) embeds the top losses and up to
            `MAX_NEIGHBOUR_BANK` training examples to check suspected wrong labels
            (`model_neighbour_votes`); `False` skips it (no label is suspected).

    Returns:
        A `TopLosses` with the inputs; `.plot()` draws them, `.to_pandas()` tabulates them.

    Example:
    ```python
    losses = tlkit.reports.top_losses(model, data, "test", n=9)
    losses.plot().savefig("top_losses.png")
    ```
    """
    import tlkit.data as tdata

    ds = tdata.batch(data.split(split), batch_size, training=False)
    probs = model.predict(ds.map(lambda x, y: x), verbose=0)
    result = top_losses_from_predictions(
        data.split_labels(split),
        probs,
        data.class_names,
        n=n,
        split=split,
        refs=split_refs(data, split),
        audit=audit,
        neighbour_votes=(
            functools.partial(model_neighbour_votes, model, data, split, batch_size=batch_size)
            if neighbour_votes
            else None
        ),
    )
    result.inputs = gather_inputs(data, split, result.index)
    return result
