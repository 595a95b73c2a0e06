"""`UnfreezeSchedule`: how many backbone groups train at each epoch (or step).

A schedule is a pure function of the epoch (or of the optimizer step): the number of *top*
backbone groups that train, on top of the head. Nothing else is stored, so a run that resumes
from a checkpoint (`keras.callbacks.BackupAndRestore`, `fit(initial_epoch=k)`) derives the very
same trainable set that the uninterrupted run had at that point (unlike Lightning#21901, where
resumed runs re-freeze modules).

Keras has no notion of unfreezing schedules, hence this small hand-written class.
"""

from __future__ import annotations

import keras

ALL = "all"
UNITS = ("epoch", "step")


def _check_count(value, where):
    if isinstance(value, str):
        if value != ALL:
            raise ValueError(
                f"Expected a number of groups (int >= 0) or 'all' {where}. Received: {value!r}"
            )
        return ALL
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"Expected a number of groups (int >= 0) or 'all' {where}. Received: {value!r}"
        )
    if value < 0:  # unfreeze_top's convention: negative means all
        return ALL
    return int(value)


def _check_unit(unit):
    if unit not in UNITS:
        raise ValueError(f"Expected `unit` in {UNITS}. Received: unit={unit!r}")
    return unit


class UnfreezeSchedule:
    """Which layer groups train when: base class and constructors.

    `num_unfrozen(t, num_backbone_groups)` gives how many backbone groups, counted from the top
    (the output side), train at epoch (or optimizer step) `t`; the head always trains. Use the
    constructors:

    - `UnfreezeSchedule.gradual(head_epochs=2, first=2, every=1, per_step=1)`: ULMFiT-style
      gradual unfreezing: the head alone for 2 epochs, then the top 2 groups, then one more
      group every epoch until all train.
    - `UnfreezeSchedule.table({0: 0, 3: 2, 5: "all"})`: epoch -> number of top groups (or
      `"all"`); the last entry at or before `t` applies.
    - `UnfreezeSchedule.by_step({0: 0, 100: 1, 200: "all"})`: the same, counted in optimizer
      steps (`optimizer.iterations`).
    - `UnfreezeSchedule.constant(n)`: the same trainable set for the whole run.

    Schedules are serializable (`get_config` / `from_config`, registered with Keras).

    Example:
    ```python
    schedule = tlkit.unfreeze.UnfreezeSchedule.gradual(head_epochs=2, first=2)
    [schedule.num_unfrozen(epoch, num_backbone_groups=5) for epoch in range(7)]
    # [0, 0, 2, 3, 4, 5, 5]
    ```
    """

    unit = "epoch"

    def num_unfrozen(self, t: int, num_backbone_groups: int) -> int:
        """Number of top backbone groups that train at epoch/step `t` (0..num_backbone_groups)."""
        count = self._count(int(t))
        if count == ALL:
            return int(num_backbone_groups)
        return min(int(count), int(num_backbone_groups))

    def _count(self, t: int):
        raise NotImplementedError

    def trainable_groups(self, t: int, group_names, head_name: str = "head") -> list[str]:
        """Names of the groups that train at `t`, given all group names from input to output."""
        names = list(group_names)
        body = [n for n in names if n != head_name]
        head = [n for n in names if n == head_name]
        n = self.num_unfrozen(t, len(body))
        return (body[len(body) - n :] if n else []) + head

    def change_points(self, until: int, num_backbone_groups: int) -> list[tuple[int, int]]:
        """`(t, num_unfrozen)` for `t = 0` and each `t < until` where the count changes."""
        points = []
        previous = None
        for t in range(int(until)):
            n = self.num_unfrozen(t, num_backbone_groups)
            if n != previous:
                points.append((t, n))
                previous = n
        return points

    # -- constructors ----------------------------------------------------------------------
    @staticmethod
    def gradual(head_epochs=1, first=1, every=1, per_step=1, unit="epoch") -> GradualUnfreeze:
        """ULMFiT-style: head only, then `first` top groups, `per_step` more every `every`.

        Args:
            head_epochs: epochs (steps when `unit="step"`) with only the head training.
            first: number of top backbone groups unfrozen when the head phase ends.
            every: epochs (steps) between two further unfreezing steps.
            per_step: groups added at each further step.
            unit: `"epoch"` or `"step"` (optimizer steps, `optimizer.iterations`).
        """
        return GradualUnfreeze(head_epochs, first, every, per_step, unit=unit)

    @staticmethod
    def from_fine_tune_config(config, num_groups: int) -> UnfreezeSchedule:
        """The schedule of a `tlkit.FineTuneConfig` (`unfreeze`, `first`, `every`, `per_step`,
        `table`; see `tlkit.config`) for a backbone of `num_groups` groups. Fine-tuning starts
        at epoch `config.head_epochs`."""
        head = int(config.head_epochs)
        if config.unfreeze == "all":
            return UnfreezeSchedule.table({0: 0, head: "all"})
        if config.unfreeze == "table":
            table = {head + int(k): v for k, v in config.table.items()}
            table.setdefault(0, 0)
            return UnfreezeSchedule.table(table)
        first, per_step = config.unfreeze_steps(num_groups)
        return UnfreezeSchedule.gradual(
            head_epochs=head, first=first, every=int(config.every), per_step=per_step
        )

    @staticmethod
    def table(table, unit="epoch") -> TableUnfreeze:
        """Piecewise-constant schedule: `{epoch: num_groups or "all"}` (missing 0 means 0)."""
        return TableUnfreeze(table, unit=unit)

    @staticmethod
    def by_step(table) -> TableUnfreeze:
        """`table` counted in optimizer steps: `{step: num_groups or "all"}`."""
        return TableUnfreeze(table, unit="step")

    @staticmethod
    def surgical(group, head_epochs=1) -> SurgicalUnfreeze:
        """Surgical fine-tuning (Lee et al., 2023): the head alone for `head_epochs`, then the
        head and the one backbone group named `group` (the others stay frozen)."""
        return SurgicalUnfreeze(group, head_epochs)

    @staticmethod
    def constant(num_groups) -> TableUnfreeze:
        """The head plus `num_groups` top groups (or `"all"`) for the whole run."""
        return TableUnfreeze({0: num_groups})

    # -- serialization ---------------------------------------------------------------------
    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="tlkit")
class GradualUnfreeze(UnfreezeSchedule):
    """See `UnfreezeSchedule.gradual`."""

    def __init__(self, head_epochs=1, first=1, every=1, per_step=1, unit="epoch"):
        for name, value, low in (
            ("head_epochs", head_epochs, 0),
            ("first", first, 0),
            ("every", every, 1),
            ("per_step", per_step, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Expected `{name}` an int >= {low}. Received: {name}={value!r}")
        self.head_epochs = head_epochs
        self.first = first
        self.every = every
        self.per_step = per_step
        self.unit = _check_unit(unit)

    def _count(self, t):
        if t < self.head_epochs:
            return 0
        return self.first + self.per_step * ((t - self.head_epochs) // self.every)

    def get_config(self):
        return {
            "head_epochs": self.head_epochs,
            "first": self.first,
            "every": self.every,
            "per_step": self.per_step,
            "unit": self.unit,
        }


@keras.saving.register_keras_serializable(package="tlkit")
class TableUnfreeze(UnfreezeSchedule):
    """See `UnfreezeSchedule.table`."""

    def __init__(self, table, unit="epoch"):
        if not isinstance(table, dict) or not table:
            raise ValueError(
                "Expected `table` a non-empty dict {epoch_or_step: num_groups or 'all'}. "
                f"Received: {table!r}"
            )
        entries = {}
        for key, value in table.items():
            try:
                point = int(key)  # JSON turns int keys into strings
            except (TypeError, ValueError):
                raise ValueError(
                    f"Expected integer epochs/steps as `table` keys. Received key: {key!r}"
                ) from None
            if point < 0:
                raise ValueError(f"Expected `table` keys >= 0. Received key: {key!r}")
            entries[point] = _check_count(value, f"for key {key!r}")
        entries.setdefault(0, 0)
        self.table = dict(sorted(entries.items()))
        self.unit = _check_unit(unit)

    def _count(self, t):
        count = 0
        for point, value in self.table.items():
            if point > t:
                break
            count = value
        return count

    def get_config(self):
        return {"table": {str(k): v for k, v in self.table.items()}, "unit": self.unit}


@keras.saving.register_keras_serializable(package="tlkit")
class SurgicalUnfreeze(UnfreezeSchedule):
    """See `UnfreezeSchedule.surgical`. `num_unfrozen` is 1 once the group trains (it is not
    counted from the top: `trainable_groups` names it)."""

    def __init__(self, group, head_epochs=1, unit="epoch"):
        if not isinstance(group, str) or not group:
            raise ValueError(f"Expected `group` a layer group name. Received: group={group!r}")
        if isinstance(head_epochs, bool) or not isinstance(head_epochs, int) or head_epochs < 0:
            raise ValueError(f"Expected `head_epochs` an int >= 0. Received: {head_epochs!r}")
        self.group = group
        self.head_epochs = head_epochs
        self.unit = _check_unit(unit)

    def _count(self, t):
        return 0 if t < self.head_epochs else 1

    def trainable_groups(self, t: int, group_names, head_name: str = "head") -> list[str]:
        names = list(group_names)
        if self.group not in names:
            raise ValueError(f"Surgical fine-tuning: no layer group {self.group!r}; the model's "
                             f"groups are {names}.")
        chosen = [self.group] if self._count(int(t)) else []
        return chosen + [n for n in names if n == head_name]

    def get_config(self):
        return {"group": self.group, "head_epochs": self.head_epochs, "unit": self.unit}


def get(schedule) -> UnfreezeSchedule:
    """Resolves an `UnfreezeSchedule`, a `{epoch: n}` table, an int, or a serialized schedule."""
    if isinstance(schedule, UnfreezeSchedule):
        return schedule
    if isinstance(schedule, dict) and "class_name" in schedule:
        return keras.saving.deserialize_keras_object(schedule)
    if isinstance(schedule, dict):
        return TableUnfreeze(schedule)
    if isinstance(schedule, (int, str)) and not isinstance(schedule, bool):
        return UnfreezeSchedule.constant(schedule)
    raise TypeError(
        "Expected an `UnfreezeSchedule`, a dict {epoch: num_groups}, an int or 'all'. "
        f"Received: {type(schedule).__name__}"
    )
