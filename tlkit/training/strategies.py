"""Fine-tuning strategies: what `FineTuneConfig.strategy` does before `fine_tune`'s one `fit`.

- `gradual` (the default, today's behaviour): the head phase, then the `unfreeze` schedule
  (`gradual`, `all` or `table`) with every other setting as given.
- `full`: the head phase, then every group at once (`unfreeze` is ignored).
- `lp_ft` (Kumar et al., 2022): a converged linear probe (`tlkit.fit_linear_probe`, L-BFGS on
  frozen features) initialises the head; then every group fine-tunes, with no head epochs
  (`head_epochs`, `head_lr` and `unfreeze` are ignored).
- `linear_probe`: the converged probe alone; no `fit` (every epoch setting is ignored).
- `surgical` (Lee et al., 2023): the head phase, then only the head and one backbone group
  train (`surgical_group`: an index from the input side, negative from the top, a name, or
  `"auto"`: each of up to `SURGICAL_CANDIDATES` groups spread over the depth trains for a few
  steps from the probe's head, and the lowest validation loss wins).
- `auto`: the probe's validation accuracy chooses: with the probe already at
  `AUTO_PROBE_SOLVED` on validation, `linear_probe`; otherwise `lp_ft` at every label budget
  (benchmarks/strategies.py: LP-FT beat the probe alone at 1 example per class in every seed),
  and when fine-tuning ends below the probe's validation accuracy by more than validation
  noise (`AUTO_KEEP_PROBE_SE` binomial standard errors) the probe's weights are kept. The
  choice and its reason are logged on one line and returned (`FineTuneResult.strategy`).

Settings that apply to every strategy that fits: `lr`, `lr_schedule`, `optimizer`,
`weight_decay`, `layer_decay` / `layerwise_decay` (the per-group multipliers; with `surgical`
only the chosen group's multiplier matters), `ema_momentum`, `label_smoothing`, `bn_policy`,
`patience` (counted from the start of fine-tuning; for `lp_ft` the probe itself is not among
the epochs early stopping can restore, `auto` checks it).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import tensorflow as tf

from tlkit import trainability
from tlkit.config import ConfigError
from tlkit.groups import HEAD_GROUP
from tlkit.training import label_mixing
from tlkit.unfreeze.schedule import UnfreezeSchedule

logger = logging.getLogger("tlkit.training")

AUTO_PROBE_BELOW = 1
"""`auto` keeps the linear probe below this many labelled examples per class (1: never on
the label budget alone; the benchmark's LP-FT beat the probe from 1 example per class)."""
AUTO_KEEP_PROBE_SE = 2.0
"""`auto` hands back the probe's weights only when fine-tuning ends this many binomial
standard errors of the validation accuracy below the probe (the benchmark's 1 to 5
validation images per class made a plain comparison noise, and keeping the probe cost
accuracy on both test sets)."""
AUTO_PROBE_SOLVED = 0.99
"""`auto` keeps the linear probe when it reaches this validation accuracy."""
SURGICAL_CANDIDATES = 4
"""`surgical_group="auto"` tries at most this many groups, spread from input to top."""
SURGICAL_TRIAL_STEPS = 8
"""Optimizer steps each surgical candidate trains before its validation loss is read."""


@dataclasses.dataclass
class StrategyChoice:
    """What a strategy decided before the `fit`.

    Attributes:
        name: the strategy that runs (`auto` resolved).
        requested: the configured strategy.
        reason: one line, why (for `auto` and `surgical_group="auto"`).
        config: the config the `fit` uses (epochs / unfreezing set by the strategy).
        schedule: an `UnfreezeSchedule` replacing the config's, or `None`.
        probe: `tlkit.fit_linear_probe`'s result when a probe ran, else `None`; with
            `probe_weights`, the model's weights right after it.
        examples_per_class: the smallest class count of the training data, when counted.
        surgical_group: the group `surgical` trains.
        fit: whether `fine_tune` still runs its `fit`.
    """

    name: str
    requested: str
    reason: str = ""
    config: object = None
    schedule: UnfreezeSchedule | None = None
    probe: dict | None = None
    probe_weights: list | None = None
    examples_per_class: int | None = None
    surgical_group: str | None = None
    fit: bool = True

    def to_record(self) -> dict:
        """Plain data for metrics / model cards."""
        record = {"strategy": self.name, "requested": self.requested, "reason": self.reason}
        if self.examples_per_class is not None:
            record["examples_per_class"] = self.examples_per_class
        if self.probe is not None:
            record["probe"] = {k: v for k, v in self.probe.items() if k != "examples_per_class"}
        if self.surgical_group is not None:
            record["surgical_group"] = self.surgical_group
        return record


def as_dataset(data, batch_size=256):
    """`data` as a `tf.data.Dataset` (arrays `(x, y[, w])` are sliced and batched, without
    the sample weights: the probe does not take them)."""
    if isinstance(data, tf.data.Dataset) and data.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ConfigError("FineTuneConfig.strategy: the linear probe reads the training data "
                          "once; give a finite dataset (not .repeat()) and more epochs instead")
    if data is None:
        return None
    if isinstance(data, (tuple, list)) and len(data) == 3:
        data = data[:2]
    return label_mixing.as_dataset(data, batch_size, False, seed=0, setting="strategy")


def backbone_group_names(model) -> list[str]:
    return [n for n in trainability.group_names(model) if n != HEAD_GROUP]


def resolve_group(model, group) -> str:
    """A `surgical_group` index (from the input side; negative from the top) or name → name."""
    names = backbone_group_names(model)
    if isinstance(group, int) and not isinstance(group, bool):
        if not -len(names) <= group < len(names):
            raise ConfigError(f"FineTuneConfig.surgical_group: index {group} is out of range "
                              f"for {len(names)} backbone groups {names}")
        return names[group]
    if group not in names:
        raise ConfigError(f"FineTuneConfig.surgical_group: expected a group index, 'auto' or "
                          f"one of {names}, got {group!r}")
    return group


def prepare(model, config, train, validation, compile_args, *, batch_size=32) -> StrategyChoice:
    """Runs what `config.strategy` needs before the `fit` (a probe, a surgical group search)
    and returns the `StrategyChoice`. `compile_args` compile the model for the probe's checks.
    """
    requested = config.strategy
    choice = StrategyChoice(name=requested, requested=requested, config=config)
    if requested == "gradual":
        return choice
    if requested == "full":
        choice.config = config.replace(unfreeze="all")
        return choice
    train_ds, val_ds = as_dataset(train, batch_size), as_dataset(validation, batch_size)
    if requested in ("lp_ft", "linear_probe", "auto") or config.surgical_group == "auto":
        _probe(model, choice, train_ds, val_ds)
    if requested == "auto":
        _choose_auto(choice)
    if choice.name == "linear_probe":
        choice.fit = False
    elif choice.name == "lp_ft":
        choice.config = config.replace(head_epochs=0, fine_epochs=max(config.fine_epochs, 1),
                                       unfreeze="all")
    elif choice.name == "surgical":
        group = config.surgical_group
        if group == "auto":
            if val_ds is None:
                raise ConfigError("FineTuneConfig.surgical_group: 'auto' chooses the group on "
                                  "validation data; pass validation data or a group index/name")
            group, choice.reason = _search_group(model, config, train_ds, val_ds, compile_args,
                                                 choice.probe_weights)
        choice.surgical_group = resolve_group(model, group)
        choice.schedule = UnfreezeSchedule.surgical(choice.surgical_group, config.head_epochs)
    if choice.reason:
        logger.info("strategy %s%s: %s", choice.name,
                    f" (from {requested})" if requested != choice.name else "", choice.reason)
    return choice


def _probe(model, choice, train_ds, val_ds):
    from tlkit.head_training import fit_linear_probe

    choice.probe = fit_linear_probe(model, train_ds, val_ds)
    choice.examples_per_class = choice.probe.get("examples_per_class")
    choice.probe_weights = model.get_weights()


def _choose_auto(choice):
    budget, val = choice.examples_per_class, choice.probe["val_accuracy"]
    if budget is not None and budget < AUTO_PROBE_BELOW:
        choice.name = "linear_probe"
        choice.reason = (f"{budget} labelled example(s) per class < {AUTO_PROBE_BELOW}: the "
                         "converged linear probe, no fine-tuning")
    elif val is not None and val >= AUTO_PROBE_SOLVED:
        choice.name = "linear_probe"
        choice.reason = (f"the linear probe already reaches validation accuracy {val:.3f} >= "
                         f"{AUTO_PROBE_SOLVED}")
    else:
        choice.name = "lp_ft"
        shown = "no validation data" if val is None else f"probe validation accuracy {val:.3f}"
        choice.reason = (f"{budget} labelled examples per class, {shown}: LP-FT (probe, then "
                         "all groups; the probe is kept only if fine-tuning ends clearly below "
                         "it on validation)")


def _search_group(model, config, train_ds, val_ds, compile_args, start_weights):
    """The candidate group with the lowest validation loss after a few steps each (from the
    probe's weights), and a one-line reason. Each trial recompiles (a few seconds)."""
    from tlkit import optimizers as optimizers_lib

    names = backbone_group_names(model)
    if not names:
        raise ConfigError("FineTuneConfig.surgical_group: the model has no backbone groups")
    picks = np.unique(np.linspace(0, len(names) - 1, min(SURGICAL_CANDIDATES, len(names)))
                      .round().astype(int))
    losses = {}
    for index in picks:
        name = names[int(index)]
        model.set_weights(start_weights)
        trainability.set_trainable(model, [name, HEAD_GROUP], bn_policy=config.bn_policy)
        with model.distribute_strategy.scope():
            optimizer = optimizers_lib.from_config(config, float(config.lr), model)
            model.compile(optimizer=optimizer, **compile_args)
        model.fit(train_ds.repeat(), steps_per_epoch=SURGICAL_TRIAL_STEPS, epochs=1, verbose=0)
        losses[name] = float(model.evaluate(val_ds, verbose=0, return_dict=True)["loss"])
    model.set_weights(start_weights)
    trainability.freeze_backbone(model, bn_policy=config.bn_policy)
    best = min(losses, key=losses.get)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in losses.items())
    return best, (f"surgical group {best!r}: lowest validation loss after "
                  f"{SURGICAL_TRIAL_STEPS} steps each ({shown})")


def keep_probe_if_better(model, choice, validation) -> None:
    """`auto` → LP-FT: restores the probe's weights when fine-tuning ended below the probe's
    validation accuracy (measured the same way, `model.evaluate`) by more than
    `AUTO_KEEP_PROBE_SE` standard errors of that accuracy on this many validation examples."""
    if choice.requested != "auto" or choice.name != "lp_ft" or validation is None:
        return
    probe_val = choice.probe.get("val_accuracy")
    count = choice.probe.get("val_examples")
    if probe_val is None or not count:
        return  # nothing to compare with: no validation pass
    result = model.evaluate(as_dataset(validation), verbose=0, return_dict=True)
    tuned = result.get("accuracy", result.get("sparse_categorical_accuracy"))
    if tuned is None:
        return
    noise = AUTO_KEEP_PROBE_SE * math.sqrt(max(probe_val * (1 - probe_val), 1.0 / count) / count)
    if probe_val - tuned <= noise:
        return
    model.set_weights(choice.probe_weights)
    choice.name = "linear_probe"
    choice.reason += (f"; fine-tuning ended at validation accuracy {tuned:.3f}, more than "
                      f"{noise:.3f} below the probe's {probe_val:.3f} ({count} validation "
                      "examples), so the probe's weights were kept")
    logger.info("strategy auto: kept the linear probe (validation accuracy %.3f after "
                "fine-tuning < %.3f - %.3f)", tuned, probe_val, noise)
