"""`auto` (the default): LP-FT where the probe can run, else `gradual`.

From `FULL_FROM` labelled training examples per class (the smallest class; counted from the
labels, or given by the caller; `None`, the default: never) `full`, with no probe; below that
the probe chooses: with the probe already at `PROBE_SOLVED` on validation, `linear_probe`;
otherwise `lp_ft`, and when fine-tuning ends below the probe's validation accuracy by more
than validation noise (`KEEP_PROBE_SE` binomial standard errors) the probe's weights are kept
(`StrategyChoice.probe_kept`). The choice and its reason are logged on one line and returned
(`FineTuneResult.strategy`).

`auto` runs `gradual` instead (the reason says why) where the probe cannot run or the user
chose the unfreezing: a head that is not a linear classification head (regression,
multi-label, `hidden_units`, no tlkit head), an endless training dataset, labels the probe
refuses (`ProbeError`: one-hot, a class without examples), multi-worker training, an unfreeze
schedule set explicitly (`unfreeze`, `first`, `every`, `per_step`, `table` or an
`UnfreezeSchedule`; `strategy="lp_ft"` runs LP-FT with it ignored), or `fine_epochs=0`.
How the thresholds were measured: docs/benchmarks/strategies.md.
"""

from __future__ import annotations

import logging
import math
import types

import tensorflow as tf

from tlkit.training.strategies import probe, registry
from tlkit.training.strategies.base import Strategy, StrategyChoice

logger = logging.getLogger("tlkit.training")

PROBE_BELOW = 1
"""`auto` keeps the linear probe below this many labelled examples per class (1: never on
the label budget alone)."""
KEEP_PROBE_SE = 2.0
"""`auto` hands back the probe's weights only when fine-tuning ends this many binomial
standard errors of the validation accuracy below the probe."""
PROBE_SOLVED = 0.99
"""`auto` keeps the linear probe when it reaches this validation accuracy."""
FULL_FROM = None
"""`auto` runs `full` from this many training examples in the smallest class, else LP-FT;
`None` (the default): LP-FT at every budget."""

SCHEDULE_FIELDS = ("unfreeze", "first", "every", "per_step", "table")
"""The unfreeze-schedule settings; one set away from its default makes `auto` run `gradual`."""


def fallback(config, head, *, explicit_schedule=False, distribution=None) -> str | None:
    """Why `auto` runs `gradual` for this config, head (`tlkit.heads.find_head(model)`) and
    `tf.distribute` strategy, before any data is read; `None` when the probe can run.

    Args:
        config: the `tlkit.FineTuneConfig`.
        head: the model's tlkit head, or an object with `kind` and `hidden_units`; `None`: no
            tlkit head.
        explicit_schedule: an `UnfreezeSchedule` was given instead of the config's.
        distribution: the model's `tf.distribute` strategy, when known.

    Example:
    ```python
    fallback(tlkit.FineTuneConfig(unfreeze="all"), head)  # "the unfreeze schedule is set ..."
    ```
    """
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
    if distribution is not None and _workers(distribution) > 1:
        return (f"multi-worker training ({_workers(distribution)} workers): the probe runs in "
                "one process, so the unfreeze schedule (gradual)")
    return None


def _workers(distribution) -> int:
    resolver = getattr(distribution, "cluster_resolver", None)
    if resolver is None or not isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(k, [])) for k in ("chief", "worker")))


class Auto(Strategy):
    """LP-FT where it can run (the probe alone when it already solves validation), else
    `gradual`; see the module docstring for the rules.

    Example:
    ```python
    result = tlkit.fine_tune(model, train, val)  # strategy="auto"
    result.strategy["strategy"], result.strategy["reason"]
    ```
    """

    name = "auto"
    uses_probe = True

    def planned(self, config, head=None, *, distribution=None, examples_per_class=None) -> str:
        if fallback(config, head, distribution=distribution):
            return "gradual"
        if FULL_FROM is not None and examples_per_class is not None \
                and examples_per_class >= FULL_FROM:
            return "full"
        return "lp_ft"

    def prepare(self, context) -> StrategyChoice:
        from tlkit import heads as heads_lib
        from tlkit.head_training import ProbeError

        model, config = context.model, context.config
        head = heads_lib.find_head(model)
        reason = fallback(config, head, explicit_schedule=context.explicit_schedule,
                          distribution=model.distribute_strategy)
        reason = reason or probe.data_fallback(context.train)
        if reason is not None:
            return self._settle(context, "gradual", reason)
        if FULL_FROM is not None:
            count = context.examples_per_class
            if count is None:
                count = probe.smallest_class(probe.as_dataset(context.train, context.batch_size),
                                             head.units)
            if count is not None and count >= FULL_FROM:
                # No probe: at this budget it would only check the PROBE_SOLVED rule.
                choice = self._settle(context, "full", f"{count} labelled examples per class "
                                      f">= {FULL_FROM}: full fine-tuning (head phase, then "
                                      "every group); LP-FT below that", log=False)
                choice.examples_per_class = count
                choice.log()
                return choice
        choice = self.choice(context)
        try:
            probe.fit_probe(context, choice, probe.config_cs(config))
        except ProbeError as error:
            return self._settle(context, "gradual", f"the linear probe cannot run ({error}), so "
                                "the unfreeze schedule (gradual)")
        budget, val = choice.examples_per_class, choice.probe["val_accuracy"]
        if budget is not None and budget < PROBE_BELOW:
            choice.name = "linear_probe"
            choice.reason = (f"{budget} labelled example(s) per class < {PROBE_BELOW}: the "
                             "converged linear probe, no fine-tuning")
        elif val is not None and val >= PROBE_SOLVED:
            choice.name = "linear_probe"
            choice.reason = (f"the linear probe already reaches validation accuracy {val:.3f} "
                             f">= {PROBE_SOLVED}")
        else:
            choice.name = "lp_ft"
            shown = "no validation data" if val is None else f"probe validation accuracy {val:.3f}"
            choice.reason = (f"{budget} labelled examples per class, {shown}: LP-FT (probe, "
                             "then all groups; the probe is kept only if fine-tuning ends "
                             "clearly below it on validation)")
        if choice.name == "linear_probe":
            choice.fit = False
        else:
            registry.get("lp_ft").start_fine_tuning(model, choice)
        choice.log()
        return choice

    def _settle(self, context, name, reason, log=True) -> StrategyChoice:
        """`auto` runs strategy `name` (without a probe), for `reason`."""
        choice = self.choice(context, reason)
        choice.name = name
        choice.config = registry.get(name).fit_config(context.config)
        if log:
            choice.log()
        return choice

    def finish(self, model, choice, validation) -> None:
        """After LP-FT: restores the probe's weights when fine-tuning ended below the probe's
        validation accuracy (measured the same way, `model.evaluate`) by more than
        `KEEP_PROBE_SE` standard errors of that accuracy on this many validation examples."""
        if choice.name != "lp_ft" or validation is None:
            return
        probe_val = choice.probe.get("val_accuracy")
        count = choice.probe.get("val_examples")
        if probe_val is None or not count:
            return  # nothing to compare with: no validation pass
        result = model.evaluate(probe.as_dataset(validation), verbose=0, return_dict=True)
        tuned = result.get("accuracy", result.get("sparse_categorical_accuracy"))
        if tuned is None:
            return
        noise = KEEP_PROBE_SE * math.sqrt(max(probe_val * (1 - probe_val), 1.0 / count) / count)
        if probe_val - tuned <= noise:
            return
        model.set_weights(choice.probe_weights)
        choice.name = "linear_probe"
        choice.probe_kept = True
        choice.reason += (f"; fine-tuning ended at validation accuracy {tuned:.3f}, more than "
                          f"{noise:.3f} below the probe's {probe_val:.3f} ({count} validation "
                          "examples), so the probe's weights were kept")
        logger.info("strategy auto: kept the linear probe (validation accuracy %.3f after "
                    "fine-tuning < %.3f - %.3f)", tuned, probe_val, noise)

    def segments(self, config, num_groups, *, batch_norm=True, cached_features=False,
                 record=None) -> list[dict]:
        """The segments of what `auto` plans for a linear classification head (LP-FT unless
        the config rules it out); after a run, ask the strategy its record names instead."""
        head = types.SimpleNamespace(kind="classification", hidden_units=())
        return registry.get(self.planned(config, head)).segments(
            config, num_groups, batch_norm=batch_norm, cached_features=cached_features,
            record=record)
