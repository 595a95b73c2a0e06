"""The `Strategy` interface every fine-tuning strategy implements, and its typed record.

A strategy decides, before `fine_tune`'s one `fit`, what that `fit` trains (`prepare`), may act
after it (`finish`), and describes what trains when for reports (`segments`). `StrategyChoice`
is the record of what ran; the runner, reports and model cards read that record only.
"""

from __future__ import annotations

import dataclasses
import logging

from tlkit.unfreeze.schedule import UnfreezeSchedule

logger = logging.getLogger("tlkit.training")


@dataclasses.dataclass
class StrategyContext:
    """What a strategy's `prepare` may read.

    Attributes:
        model: the built model (compiled or not).
        config: the `tlkit.FineTuneConfig` of the run.
        train, validation: the training and validation data as `fine_tune` got them
            (a `tf.data.Dataset` or `(x, y[, w])` arrays; `validation` may be `None`).
        compile_args: `model.compile` arguments (loss, metrics) for trial fits and checks.
        batch_size: the global batch size for array data.
        explicit_schedule: whether the caller gave an `UnfreezeSchedule` of its own.
        feature_cache: `{"dir": .., "fingerprints": {"train": .., "val": ..}}` where a probe
            keeps its features, or `None`.
        examples_per_class: the smallest class count of `train` when the caller knows it.
        unlabeled: unbatched `tf.data.Dataset` of unlabelled inputs (`LabeledData.unlabeled`,
            or `fine_tune(..., unlabeled=)`), or `None`; semi-supervised strategies read it.
        fine_tune: `(train, validation, config) -> FineTuneResult`: `tlkit.fine_tune` on this
            model with the caller's batch size and loss (a teacher's own run), or `None`.
    """

    model: object
    config: object
    train: object
    validation: object = None
    compile_args: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 32
    explicit_schedule: bool = False
    feature_cache: dict | None = None
    examples_per_class: int | None = None
    unlabeled: object = None
    fine_tune: object = None


@dataclasses.dataclass
class StrategyChoice:
    """What a strategy decided and what ran: the typed record of a strategy.

    Attributes:
        name: the strategy that ran (`auto` resolved).
        requested: the configured strategy.
        reason: one line, why (for `auto` and `surgical_group="auto"`).
        config: the config the `fit` uses (epochs / unfreezing set by the strategy).
        schedule: an `UnfreezeSchedule` replacing the config's, or `None`.
        probe: `tlkit.fit_linear_probe`'s result when a probe ran, else `None`; with
            `probe_weights`, the model's weights right after it.
        examples_per_class: the smallest class count of the training data, when counted.
        surgical_group: the group `surgical` trains.
        fit: whether `fine_tune` still runs its `fit`.
        probe_kept: `auto` fine-tuned, then handed back the probe's weights (`name` is then
            `linear_probe`).
        train: a batched `tf.data.Dataset` the `fit` trains on instead of the caller's (e.g.
            labelled + pseudo-labelled data), or `None`.
        extra: more plain data for the record (e.g. pseudo-label counts).
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
    probe_kept: bool = False
    train: object = None
    extra: dict = dataclasses.field(default_factory=dict)

    def to_record(self) -> dict:
        """Plain data for metrics.json, run state and model cards (`FineTuneResult.strategy`)."""
        record = {"strategy": self.name, "requested": self.requested, "reason": self.reason}
        if self.examples_per_class is not None:
            record["examples_per_class"] = self.examples_per_class
        if self.probe is not None:
            record["probe"] = {k: v for k, v in self.probe.items() if k != "examples_per_class"}
        if self.surgical_group is not None:
            record["surgical_group"] = self.surgical_group
        if self.probe_kept:
            record["probe_kept"] = True
        record.update(self.extra)
        return record

    def log(self) -> None:
        """Logs the choice and its reason on one line (when there is a reason)."""
        if self.reason:
            came = f" (from {self.requested})" if self.requested != self.name else ""
            logger.info("strategy %s%s: %s", self.name, came, self.reason)


UNTRAINED_HEAD_MIN_STEPS = 16
"""Step floor per epoch of strategies whose head starts untrained (full, gradual, surgical): at 5
examples per class 8 steps left the head and the fine-tuned model short (#36;
docs/benchmarks/strategies.md, "Step budget of the defaults")."""
PROBE_HEAD_MIN_STEPS = 8
"""Step floor per epoch of strategies a converged linear probe starts (auto, lp_ft,
self_training) from `FEW_LABELS_PER_CLASS` labelled examples per class."""
FEW_LABELS_PER_CLASS = 50
"""Below this many labelled training examples in the smallest class, a probe-started head gets
`UNTRAINED_HEAD_MIN_STEPS` too (how it was chosen: docs/benchmarks/strategies.md, "Step budget
of the defaults")."""


class Strategy:
    """A fine-tuning strategy: subclass it, set `name`, implement `prepare`, register the
    class in `registry.STRATEGIES`.

    Attributes:
        name: the `FineTuneConfig.strategy` value.
        uses_probe: whether the head starts from the converged linear probe (no head epochs;
            a run's cached-feature head stage is skipped).
    """

    name: str = ""
    uses_probe: bool = False

    def min_steps_per_epoch(self, examples_per_class: int | None = None) -> int:
        """The step floor of an epoch when `FineTuneConfig.min_steps_per_epoch` is null.

        Args:
            examples_per_class: labelled training examples in the smallest class, when counted
                (the probe counts them; `StrategyChoice.examples_per_class`).

        Returns:
            `UNTRAINED_HEAD_MIN_STEPS` where the head starts untrained, or where a converged
            probe starts it (`uses_probe`) on fewer than `FEW_LABELS_PER_CLASS` examples per
            class; `PROBE_HEAD_MIN_STEPS` otherwise (also when the count is unknown).

        Example:
        ```python
        strategies.get("auto").min_steps_per_epoch(4)    # 16
        strategies.get("auto").min_steps_per_epoch(100)  # 8
        ```
        """
        few = examples_per_class is not None and examples_per_class < FEW_LABELS_PER_CLASS
        return PROBE_HEAD_MIN_STEPS if self.uses_probe and not few else UNTRAINED_HEAD_MIN_STEPS

    def planned(self, config, head=None, *, distribution=None, examples_per_class=None) -> str:
        """The strategy a run expects to run, decided before any data is read (`auto`
        resolves itself here); the name of this strategy by default.

        Args:
            config: the `tlkit.FineTuneConfig`.
            head: `tlkit.heads.find_head(model)` or an object with `kind` / `hidden_units`.
            distribution: the model's `tf.distribute` strategy, when known.
            examples_per_class: the smallest class count of the training split, when known.
        """
        return self.name

    def prepare(self, context: StrategyContext) -> StrategyChoice:
        """Runs what the strategy needs before the `fit` (a probe, a search) and returns
        the `StrategyChoice`."""
        raise NotImplementedError

    def finish(self, model, choice: StrategyChoice, validation) -> None:
        """Runs after the `fit` (e.g. `auto` keeping the probe); nothing by default."""

    def segments(self, config, num_groups: int, *, batch_norm: bool = True,
                 cached_features: bool = False, record: dict | None = None) -> list[dict]:
        """What trains when, for reports: `[{name, label, short, start, end, unfrozen, lr}]`,
        epochs `[start, end)` from the start of the run.

        Args:
            config: the `tlkit.FineTuneConfig` as configured (before the strategy's changes).
            num_groups: the number of backbone groups.
            batch_norm: whether the backbone has BatchNorm (labels name the BN policy then).
            cached_features: whether the head phase trains on cached features.
            record: `StrategyChoice.to_record()` of what ran, when known.
        """
        raise NotImplementedError

    def choice(self, context: StrategyContext, reason: str = "") -> StrategyChoice:
        """A `StrategyChoice` naming this strategy for `context`."""
        return StrategyChoice(name=self.name, requested=context.config.strategy, reason=reason,
                              config=context.config)


def bn_label(config, batch_norm: bool) -> str:
    """`", BN <policy>"` for segment labels of a backbone with BatchNorm, else `""`."""
    return f", BN {config.bn_policy}" if batch_norm else ""


def head_label(cached_features: bool) -> str:
    return "head only" + (" (cached features)" if cached_features else "")


def segment(i, start, end, label, short, unfrozen, lr) -> dict:
    """One entry of `Strategy.segments`."""
    return {"name": f"s{i}", "label": label, "short": short, "start": start, "end": end,
            "unfrozen": unfrozen, "lr": lr}

