"""Fine-tuning strategies: what `FineTuneConfig.strategy` does before `fine_tune`'s one `fit`.

- `gradual`: the head phase, then the `unfreeze` schedule (`gradual`, `all` or `table`) with
  every other setting as given.
- `full`: the head phase, then every group at once (`unfreeze` is ignored).
- `lp_ft` (Kumar et al., 2022): a converged linear probe (`tlkit.fit_linear_probe`, L-BFGS on
  frozen features, inverse L2 strength `probe_c`) initialises the head, its logits divided by
  `probe_temperature` (same predictions, more training loss left: the "energy" that adapts the
  features, Ren et al., 2023); then every group fine-tunes, with no head epochs (`head_epochs`,
  `head_lr` and `unfreeze` are ignored).
- `linear_probe`: the converged probe alone; no `fit` (every epoch setting is ignored). Its C
  is chosen on validation from `head_training.PROBE_CS` when the validation split has at least
  `LINEAR_PROBE_CHOOSE_FROM` examples, else (a tiny split, or none) it is `probe_c`, the
  scale-free default LP-FT's probe uses; `result.strategy["probe"]["C_chosen_by"]` says which.
- `surgical` (Lee et al., 2023): the head phase, then only the head and one backbone group
  train (`surgical_group`: an index from the input side, negative from the top, a name, or
  `"auto"`: each of up to `SURGICAL_CANDIDATES` groups spread over the depth trains for a few
  steps from the probe's head, and the lowest validation loss wins).
- `auto` (the default): from `AUTO_FULL_FROM` labelled training examples per class (the
  smallest class; counted from the labels, or given by the caller; `None`, the default: never)
  `full`, with no probe; below that the probe chooses: with the probe already at
  `AUTO_PROBE_SOLVED` on validation, `linear_probe`; otherwise `lp_ft` (benchmarks/strategies.py: LP-FT beat the probe alone at
  1 example per class in every seed), and when fine-tuning ends below the probe's validation
  accuracy by more than validation noise (`AUTO_KEEP_PROBE_SE` binomial standard errors) the
  probe's weights are kept. The choice and its reason are logged on one line and returned
  (`FineTuneResult.strategy`).
  `auto` runs `gradual` instead (the reason says why) where the probe cannot run or the user
  chose the unfreezing: a head that is not a linear classification head (regression,
  multi-label, `hidden_units`, no tlkit head), an endless training dataset, labels the probe
  refuses (`ProbeError`: one-hot, a class without examples), multi-worker training, an
  unfreeze schedule set explicitly (`unfreeze`, `first`, `every`, `per_step`, `table` or an
  `UnfreezeSchedule`; `strategy="lp_ft"` runs LP-FT with it ignored), or `fine_epochs=0`.

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
AUTO_FULL_FROM = None
"""`auto` runs `full` from this many training examples in the smallest class (counted from the
labels, or given by the caller), else LP-FT; `None` (the default): LP-FT at every budget.
benchmarks/strategies.py, Fashion-MNIST, EfficientNet-Lite0, 5 seeds: with a weakly
regularised probe taken as fitted (round 5) LP-FT trailed `full` on the shifted test set by 4.5
points at 80 training examples per class, so `auto` switched to `full` from 60. With the probe
strongly regularised and softened (`probe_c`, `probe_temperature` defaults) LP-FT leads `full`
on both test sets at every budget from 1 to 100 per class (rounds 6 and 7,
benchmarks/results/strategies_round7.json), so no budget switches any more."""

LINEAR_PROBE_CHOOSE_FROM = 100
"""`linear_probe` chooses its C on validation from this many validation examples; below, it
fits at `probe_c`. benchmarks/results/strategies_budget.json (Fashion-MNIST, Lite0, 3 paired
seeds; rows `linear_probe`, C chosen on the split, and `linear_probe_C4`): on 10 and 50
validation images the choice jumped to the grid's largest Cs in a seed and cost 2.3 and 2.4
points there; from 100 (and at 200) it chose C=40 in every seed, with the same accuracy as C=4
(+0.4 and +0.1 points) and a lower calibration error (0.02-0.03 vs 0.10-0.16)."""

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


SCHEDULE_FIELDS = ("unfreeze", "first", "every", "per_step", "table")
"""The unfreeze-schedule settings; one set away from its default makes `auto` run `gradual`."""


def auto_fallback(config, head, *, explicit_schedule=False, strategy=None) -> str | None:
    """Why `auto` runs `gradual` for this config, head (`tlkit.heads.find_head(model)`) and
    `tf.distribute` strategy, before any data is read; `None` when the probe can run.
    `explicit_schedule`: an `UnfreezeSchedule` was given instead of the config's."""
    from tlkit.config import DEFAULTS

    what = None
    if head is None:
        what = "the model has no tlkit head"
    elif head.kind != "classification":
        what = {"regression": "a regression head",
                "multilabel": "a multi-label head"}.get(head.kind, f"a {head.kind} head")
    elif head.hidden_units:
        what = f"an MLP head (hidden_units={list(head.hidden_units)})"
    if what is not None:
        return (f"{what}: the linear probe needs a linear classification head, so the "
                "unfreeze schedule (gradual)")
    changed = [f"{n}={getattr(config, n)!r}" for n in SCHEDULE_FIELDS
               if getattr(config, n) != DEFAULTS[n]]
    if explicit_schedule:
        changed.insert(0, "an UnfreezeSchedule")
    if changed:
        return (f"the unfreeze schedule is set ({', '.join(changed)}): honoured (gradual); "
                "strategy='lp_ft' runs LP-FT instead")
    if config.fine_epochs == 0:
        return "fine_epochs=0: the head phase only, as configured (gradual)"
    if strategy is not None and _workers(strategy) > 1:
        return (f"multi-worker training ({_workers(strategy)} workers): the probe runs in one "
                "process, so the unfreeze schedule (gradual)")
    return None


def _workers(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(k, [])) for k in ("chief", "worker")))


def _fall_back(choice, reason) -> StrategyChoice:
    return _settle(choice, "gradual", reason)


def _settle(choice, name, reason=None) -> StrategyChoice:
    """`choice` becomes `name` with no probe (`full`: every group after the head phase), with
    `reason` logged when given."""
    choice.name = name
    if reason is not None:
        choice.reason = reason
    if name == "full":
        choice.config = choice.config.replace(unfreeze="all")
    _log_choice(choice)
    return choice


def _log_choice(choice) -> None:
    if choice.reason:
        came = f" (from {choice.requested})" if choice.requested != choice.name else ""
        logger.info("strategy %s%s: %s", choice.name, came, choice.reason)


def prepare(model, config, train, validation, compile_args, *, batch_size=32,
            explicit_schedule=False, feature_cache=None,
            examples_per_class=None) -> StrategyChoice:
    """Runs what `config.strategy` needs before the `fit` (a probe, a surgical group search)
    and returns the `StrategyChoice`. `compile_args` compile the model for the probe's checks.
    `explicit_schedule`: the caller gives an `UnfreezeSchedule` (`auto` honours it).
    `feature_cache`: `{"dir": .., "fingerprints": {"train": .., "val": ..}}` where the probe
    keeps its features (`tlkit.fit_linear_probe`'s `cache_dir`), or `None`.
    `examples_per_class`: the smallest class count of `train` when the caller knows it (the
    recipe runner's data audit); `auto` otherwise counts the labels (one pass, no backbone).
    """
    from tlkit import heads as heads_lib
    from tlkit.head_training import ProbeError

    requested = config.strategy
    choice = StrategyChoice(name=requested, requested=requested, config=config)
    if requested == "auto":
        reason = auto_fallback(config, heads_lib.find_head(model),
                               explicit_schedule=explicit_schedule,
                               strategy=model.distribute_strategy)
        if reason is None:
            reason = _data_fallback(train)
        if reason is not None:
            return _fall_back(choice, reason)
    if requested in ("gradual", "full"):
        return _settle(choice, requested)
    train_ds, val_ds = as_dataset(train, batch_size), as_dataset(validation, batch_size)
    if requested == "auto" and AUTO_FULL_FROM is not None:
        if examples_per_class is None:
            examples_per_class = smallest_class(train_ds, heads_lib.find_head(model).units)
        if examples_per_class is not None and examples_per_class >= AUTO_FULL_FROM:
            # No probe: at this budget it would only check the 0.99 rule (before the probe ran
            # on one BLAS thread its L-BFGS fit cost a third of the training time here).
            choice.examples_per_class = examples_per_class
            return _settle(choice, "full", f"{examples_per_class} labelled examples per class "
                           f">= {AUTO_FULL_FROM}: full fine-tuning (head phase, then every "
                           "group); LP-FT below that")
    if requested in ("lp_ft", "linear_probe", "auto") or config.surgical_group == "auto":
        try:
            _probe(model, choice, train_ds, val_ds, feature_cache)
        except ProbeError as error:
            if requested != "auto":
                raise
            return _fall_back(choice, f"the linear probe cannot run ({error}), so the unfreeze "
                              "schedule (gradual)")
    if requested == "auto":
        _choose_auto(choice)
    if choice.name == "linear_probe":
        choice.fit = False
    elif choice.name == "lp_ft":
        choice.config = config.replace(head_epochs=0, fine_epochs=max(config.fine_epochs, 1),
                                       unfreeze="all")
        soften_probe(model, choice)
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
    _log_choice(choice)
    return choice


def soften_probe(model, choice) -> None:
    """LP-FT starts from the probe's logits divided by `config.probe_temperature` (the same
    predictions, a higher training loss: more gradient reaches the backbone). `probe_weights`
    stay the probe's own (what `auto` restores when fine-tuning loses to it)."""
    from tlkit import heads as heads_lib

    temperature = float(choice.config.probe_temperature)
    if temperature != 1.0:
        heads_lib.find_head(model).scale_logits(1.0 / temperature)
    choice.probe["temperature"] = temperature


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


def _data_fallback(train) -> str | None:
    """Why `auto` cannot probe this training data, else `None`."""
    if isinstance(train, tf.data.Dataset):
        if train.cardinality() == tf.data.INFINITE_CARDINALITY:
            return ("the training data is an endless dataset (.repeat()), which the probe "
                    "cannot read once, so the unfreeze schedule (gradual)")
        return None
    if not isinstance(train, (tuple, list)) or len(train) not in (2, 3):
        return (f"the probe reads a tf.data.Dataset or (x, y) arrays, not "
                f"{type(train).__name__}, so the unfreeze schedule (gradual)")
    return None


def _probe(model, choice, train_ds, val_ds, feature_cache=None):
    from tlkit.head_training import fit_linear_probe

    cache = feature_cache or {}
    probe_c = choice.config.probe_c
    # A probe that starts fine-tuning uses the config's C (strong regularization leaves the
    # backbone more to learn: LP-FT from a strong L2 beat a weak one in every cell of
    # benchmarks/results/strategies_lp_ft_c.json and strategies_round6.json, while the probe's
    # own accuracy hardly depends on C, benchmarks/results/probe_c.json); the probe alone
    # (`linear_probe`) keeps the C that scores best on validation when the split is large
    # enough to tell (`LINEAR_PROBE_CHOOSE_FROM`), else the same `probe_c`.
    if probe_c is None:
        cs = {}
    elif choice.requested == "linear_probe":
        cs = {"default_C": probe_c, "choose_from": LINEAR_PROBE_CHOOSE_FROM}
    else:
        cs = {"Cs": (probe_c,)}
    choice.probe = fit_linear_probe(model, train_ds, val_ds, cache_dir=cache.get("dir"),
                                    data_fingerprints=cache.get("fingerprints"), **cs)
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
        model.fit(train_ds.repeat(), steps_per_epoch=SURGICAL_TRIAL_STEPS, epochs=1, verbose=0,
                  shuffle=False)  # a dataset comes shuffled; Keras warns about shuffle=True
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
