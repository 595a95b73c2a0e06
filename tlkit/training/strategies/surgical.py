"""`surgical` (Lee et al., 2023): the head phase, then only the head and one backbone group
train (`surgical_group`: an index from the input side, negative from the top, a name, or
`"auto"`: each of up to `CANDIDATES` groups spread over the depth trains for `TRIAL_STEPS`
steps from the probe's head, and the lowest validation loss wins)."""

from __future__ import annotations

import numpy as np

from tlkit import trainability
from tlkit.config import ConfigError
from tlkit.groups import HEAD_GROUP
from tlkit.training.strategies import probe
from tlkit.training.strategies.base import Strategy, StrategyChoice, bn_label, head_label, segment
from tlkit.unfreeze.schedule import UnfreezeSchedule

CANDIDATES = 4
"""`surgical_group="auto"` tries at most this many groups, spread from input to top."""
TRIAL_STEPS = 8
"""Optimizer steps each surgical candidate trains before its validation loss is read."""


def backbone_group_names(model) -> list[str]:
    """The model's layer groups below the head, from the input side."""
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


class Surgical(Strategy):
    """The head phase, then one backbone group with the head.

    Example:
    ```python
    tlkit.fine_tune(model, train, val, strategy="surgical", surgical_group=0)
    ```
    """

    name = "surgical"

    def prepare(self, context) -> StrategyChoice:
        choice = self.choice(context)
        model, config = context.model, context.config
        group = config.surgical_group
        if group == "auto":
            if context.validation is None:
                raise ConfigError("FineTuneConfig.surgical_group: 'auto' chooses the group on "
                                  "validation data; pass validation data or a group index/name")
            probe.fit_probe(context, choice, probe.config_cs(config))
            group, choice.reason = _search_group(
                model, config, probe.as_dataset(context.train, context.batch_size),
                probe.as_dataset(context.validation, context.batch_size),
                context.compile_args, choice.probe_weights)
        choice.surgical_group = resolve_group(model, group)
        choice.schedule = UnfreezeSchedule.surgical(choice.surgical_group, config.head_epochs)
        choice.log()
        return choice

    def segments(self, config, num_groups, *, batch_norm=True, cached_features=False,
                 record=None) -> list[dict]:
        group = (record or {}).get("surgical_group")
        if group is None and config.surgical_group != "auto":
            group = f"group {config.surgical_group}"
        shown = group or "one group (chosen on validation)"
        head, total = config.head_epochs, config.head_epochs + config.fine_epochs
        starts = [s for s in ([0, head] if head else [0]) if s < total]
        segments = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else total
            if start < head:
                segments.append(segment(i, start, end, head_label(cached_features), "head", 0,
                                        config.resolved_head_lr))
            else:
                segments.append(segment(i, start, end,
                                        f"{shown} + head{bn_label(config, batch_norm)}",
                                        str(shown), 1, config.lr))
        return segments


def _search_group(model, config, train_ds, val_ds, compile_args, start_weights):
    """The candidate group with the lowest validation loss after a few steps each (from the
    probe's weights), and a one-line reason. Each trial recompiles (a few seconds)."""
    from tlkit import optimizers as optimizers_lib

    names = backbone_group_names(model)
    if not names:
        raise ConfigError("FineTuneConfig.surgical_group: the model has no backbone groups")
    picks = np.unique(np.linspace(0, len(names) - 1, min(CANDIDATES, len(names)))
                      .round().astype(int))
    losses = {}
    for index in picks:
        name = names[int(index)]
        model.set_weights(start_weights)
        trainability.set_trainable(model, [name, HEAD_GROUP], bn_policy=config.bn_policy)
        with model.distribute_strategy.scope():
            optimizer = optimizers_lib.from_config(config, float(config.lr), model)
            model.compile(optimizer=optimizer, **compile_args)
        model.fit(train_ds.repeat(), steps_per_epoch=TRIAL_STEPS, epochs=1, verbose=0,
                  shuffle=False)  # a dataset comes shuffled; Keras warns about shuffle=True
        losses[name] = float(model.evaluate(val_ds, verbose=0, return_dict=True)["loss"])
    model.set_weights(start_weights)
    trainability.freeze_backbone(model, bn_policy=config.bn_policy)
    best = min(losses, key=losses.get)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in losses.items())
    return best, (f"surgical group {best!r}: lowest validation loss after "
                  f"{TRIAL_STEPS} steps each ({shown})")
