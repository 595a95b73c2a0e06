"""`PrototypeClassifier`: few-shot nearest-centroid classification on normalized embeddings."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tlkit.data.features._feature_model import call_feature_model, l2_normalize


class PrototypeClassifier:
    """Nearest class prototype (mean of L2-normalized embeddings), by cosine similarity.

    No gradient training: `fit` averages the normalized embeddings of each class. It suits
    label budgets of a few examples per class, on top of any frozen feature model.

    Args:
        feature_model: optional callable mapping a batch of raw inputs to embeddings (a Keras
            model or layer, or any function). When `None`, every method takes embeddings.
        temperature: scale of the cosine similarities before the softmax of `predict_proba`.
        batch_size: batch size when running `feature_model`.
        class_names: optional names for `predict_names` / reports.
        center: SimpleShot's "CL2N" (Wang et al., 2019): subtract the mean embedding of the
            training (support) examples before the L2 normalization, in `fit` and after it.

    Example:
    ```python
    clf = tlkit.data.PrototypeClassifier(feature_model=backbone_model)
    clf.fit(x_support, y_support)      # e.g. 5 images per class
    print(clf.evaluate(x_test, y_test))  # {"accuracy": ..., "num_examples": ...}
    ```
    """

    def __init__(
        self, feature_model=None, temperature: float = 10.0, batch_size: int = 64, class_names=None,
        center: bool = False,
    ):
        if temperature <= 0:
            raise ValueError(f"Expected `temperature` > 0. Received: temperature={temperature}")
        self.feature_model = feature_model
        self.temperature = float(temperature)
        self.batch_size = int(batch_size)
        self.class_names = list(class_names) if class_names is not None else None
        self.prototypes: np.ndarray | None = None
        self.center = bool(center)
        self.mean: np.ndarray | None = None  # the centering vector, set by `fit` when `center`

    # -- embeddings ----------------------------------------------------------------------------
    def embed(self, x) -> np.ndarray:
        """L2-normalized embeddings `(n, d)` of `x` (raw inputs, or embeddings already);
        centered first on the fitted mean when `center`."""
        return self._normalize(self._features(x))

    def _features(self, x) -> np.ndarray:
        if self.feature_model is None:
            return np.asarray(x, dtype="float32")
        x = np.asarray(x)
        out = [
            call_feature_model(self.feature_model, tf.convert_to_tensor(x[i : i + self.batch_size]))
            for i in range(0, len(x), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, 0), "float32")

    def _normalize(self, features) -> np.ndarray:
        if features.size:
            features = features.reshape(len(features), -1)
        if self.mean is not None and features.shape[-1:] == self.mean.shape:
            features = features - self.mean
        return l2_normalize(features)

    # -- fitting and predicting ----------------------------------------------------------------
    def fit(self, features, labels, num_classes: int | None = None) -> PrototypeClassifier:
        """Computes one prototype per class.

        Args:
            features: embeddings `(n, ...)`, or raw inputs when `feature_model` is set; or a
                `tf.data.Dataset` of `(x, y)` (then `labels` is `None`).
            labels: integer class indices `(n,)`.
            num_classes: number of classes (default: `max(labels) + 1`, or the length of
                `class_names`); every class needs at least one example.

        Returns:
            `self`.
        """
        features, labels = _arrays(features, labels)
        if len(features) != len(labels):
            raise ValueError(
                f"features and labels must have the same length. Received: {len(features)} "
                f"and {len(labels)}."
            )
        if len(labels) == 0:
            raise ValueError("PrototypeClassifier.fit got no examples.")
        labels = labels.astype("int64")
        if num_classes is None:
            num_classes = len(self.class_names) if self.class_names else int(labels.max()) + 1
        if labels.min() < 0 or labels.max() >= num_classes:
            i = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
            raise ValueError(f"labels[{i}] = {labels[i]} is outside [0, {num_classes}).")
        counts = np.bincount(labels, minlength=num_classes)
        if (counts == 0).any():
            missing = np.flatnonzero(counts == 0).tolist()
            raise ValueError(f"No examples for class(es) {missing}; each class needs at least one.")
        features = self._features(features)
        self.mean = features.reshape(len(features), -1).mean(axis=0) if self.center else None
        embeddings = self._normalize(features)
        sums = np.zeros((num_classes, embeddings.shape[1]), "float32")
        np.add.at(sums, labels, embeddings)
        self.prototypes = l2_normalize(sums / counts[:, None])
        return self

    def _require_fit(self):
        if self.prototypes is None:
            raise ValueError(
                "PrototypeClassifier is not fitted; call `fit(features, labels)` first."
            )

    def similarities(self, x) -> np.ndarray:
        """Cosine similarity `(n, num_classes)` of each example to each class prototype."""
        self._require_fit()
        embeddings = self.embed(x)
        if embeddings.shape[1] != self.prototypes.shape[1]:
            raise ValueError(
                f"Embeddings have {embeddings.shape[1]} dimensions; the prototypes have "
                f"{self.prototypes.shape[1]}."
            )
        return embeddings @ self.prototypes.T

    def predict_proba(self, x) -> np.ndarray:
        """Softmax over `temperature * cosine similarity`, shape `(n, num_classes)`."""
        logits = self.temperature * self.similarities(x)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def predict(self, x) -> np.ndarray:
        """Index of the nearest prototype per example."""
        return np.argmax(self.similarities(x), axis=1)

    def evaluate(self, x, y=None) -> dict:
        """`{"accuracy": float, "num_examples": int}` on `(x, y)` (or a dataset of pairs)."""
        x, y = _arrays(x, y)
        predictions = self.predict(x)
        y = np.asarray(y).reshape(-1).astype("int64")
        if len(y) != len(predictions):
            raise ValueError(f"x has {len(predictions)} examples but y has {len(y)}.")
        return {"accuracy": float(np.mean(predictions == y)), "num_examples": int(len(y))}

    # -- saving --------------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Prototypes and settings (not the feature model), JSON-serializable."""
        return {
            "temperature": self.temperature,
            "batch_size": self.batch_size,
            "class_names": self.class_names,
            "center": self.center,
            "mean": None if self.mean is None else self.mean.tolist(),
            "prototypes": None if self.prototypes is None else self.prototypes.tolist(),
        }

    @classmethod
    def from_config(cls, config: dict, feature_model=None) -> PrototypeClassifier:
        config = dict(config)
        prototypes = config.pop("prototypes", None)
        mean = config.pop("mean", None)
        clf = cls(feature_model=feature_model, **config)
        clf.mean = None if mean is None else np.asarray(mean, dtype="float32")
        if prototypes is not None:
            clf.prototypes = np.asarray(prototypes, dtype="float32")
        return clf


def _arrays(x, y):
    """`(x, y)` arrays from arrays or from a `tf.data.Dataset` of `(x, y)` pairs."""
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError("Pass either a dataset of (x, y) pairs or arrays x and y, not both.")
        xs, ys = [], []
        spec = x.element_spec
        batched = spec[1].shape.rank == 1
        for xb, yb in x.as_numpy_iterator():
            xs.append(xb if batched else xb[np.newaxis])
            ys.append(np.asarray(yb).reshape(-1))
        if not xs:
            raise ValueError("The dataset is empty.")
        return np.concatenate(xs), np.concatenate(ys)
    if y is None:
        raise ValueError("Expected labels `y` with array inputs.")
    return np.asarray(x), np.asarray(y).reshape(-1)
