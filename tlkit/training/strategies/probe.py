"""What the probing strategies (`lp_ft`, `linear_probe`, `auto`) share: reading the data once,
fitting the converged linear probe, and the probe's report segment."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tlkit.config import ConfigError
from tlkit.training import label_mixing
from tlkit.training.strategies.base import bn_label, segment


def as_dataset(data, batch_size=256):
    """`data` as a `tf.data.Dataset` (arrays `(x, y[, w])` are sliced and batched, without
    the sample weights: the probe does not take them); `None` stays `None`.

    Example:
    ```python
    as_dataset((x, y), 64)  # batches of 64 (x, y) pairs
    ```
    """
    if isinstance(data, tf.data.Dataset) and data.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ConfigError("FineTuneConfig.strategy: the linear probe reads the training data "
                          "once; give a finite dataset (not .repeat()) and more epochs instead")
    if data is None:
        return None
    if isinstance(data, (tuple, list)) and len(data) == 3:
        data = data[:2]
    return label_mixing.as_dataset(data, batch_size, False, seed=0, setting="strategy")


def smallest_class(train_ds, units) -> int | None:
    """The smallest class count of `train_ds`'s labels (a pass over the labels; the backbone
    does not run), or `None` when they are not class indices below `units` (e.g. one-hot):
    then the probe decides (and refuses such labels)."""
    counts = np.zeros(max(int(units), 2), "int64")
    for labels in train_ds.map(lambda *element: element[1]).as_numpy_iterator():
        labels = np.asarray(labels)
        if labels.ndim > 1 and labels.shape[-1] > 1:
            return None
        labels = labels.reshape(-1).astype("int64")
        if labels.size and (labels.min() < 0 or labels.max() >= len(counts)):
            return None
        counts += np.bincount(labels, minlength=len(counts))
    return int(counts.min())


def data_fallback(train) -> str | None:
    """Why the probe cannot read this training data (one line), else `None`."""
    if isinstance(train, tf.data.Dataset):
        if train.cardinality() == tf.data.INFINITE_CARDINALITY:
            return ("the training data is an endless dataset (.repeat()), which the probe "
                    "cannot read once, so the unfreeze schedule (gradual)")
        return None
    if not isinstance(train, (tuple, list)) or len(train) not in (2, 3):
        return (f"the probe reads a tf.data.Dataset or (x, y) arrays, not "
                f"{type(train).__name__}, so the unfreeze schedule (gradual)")
    return None


def fit_probe(context, choice, cs: dict) -> None:
    """Fits `tlkit.fit_linear_probe` on `context`'s data into `choice` (`probe`,
    `examples_per_class`, `probe_weights`). `cs`: `fit_linear_probe`'s C arguments."""
    from tlkit.head_training import fit_linear_probe

    cache = context.feature_cache or {}
    choice.probe = fit_linear_probe(
        context.model, as_dataset(context.train, context.batch_size),
        as_dataset(context.validation, context.batch_size), cache_dir=cache.get("dir"),
        data_fingerprints=cache.get("fingerprints"), **cs)
    choice.examples_per_class = choice.probe.get("examples_per_class")
    choice.probe_weights = context.model.get_weights()


def config_cs(config) -> dict:
    """The probe's C for a probe that starts fine-tuning: the config's `probe_c` (or chosen
    on validation when it is `None`)."""
    return {} if config.probe_c is None else {"Cs": (config.probe_c,)}


def soften(model, choice) -> None:
    """LP-FT starts from the probe's logits divided by `config.probe_temperature` (the same
    predictions, a higher training loss: more gradient reaches the backbone). `probe_weights`
    stay the probe's own (what `auto` restores when fine-tuning loses to it)."""
    from tlkit import heads as heads_lib

    temperature = float(choice.config.probe_temperature)
    if temperature != 1.0:
        heads_lib.find_head(model).scale_logits(1.0 / temperature)
    choice.probe["temperature"] = temperature


def probe_segment(cached_features: bool) -> dict:
    """The probe's report segment (no epochs: `start == end == 0`)."""
    where = "cached features" if cached_features else "features of the frozen backbone"
    return segment(0, 0, 0, f"linear probe (converged, L-BFGS on {where})", "probe", 0, None)


def all_groups_segment(config, num_groups, batch_norm, kept=False) -> dict:
    """The fine-tuning segment after a probe: every group from the start."""
    label = f"all groups + head{bn_label(config, batch_norm)}" + (
        " (then discarded: the probe's weights were kept)" if kept else "")
    return segment(1, 0, max(config.fine_epochs, 1), label, "all", num_groups, config.lr)
