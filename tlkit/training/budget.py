"""The step budget of `fine_tune`: a floor on optimizer steps per epoch for tiny training sets.

With the defaults (1 head + 3 fine epochs, batch 32), 25 training examples are 1 batch, so a
whole run would be 1 head step and 3 fine-tuning steps: the head is nearly random when the
backbone unfreezes (#36). `FineTuneConfig.min_steps_per_epoch` (default null: the strategy's
floor, 16 where the head starts untrained and 8 where a converged probe starts it;
docs/benchmarks/strategies.md) makes every epoch run at least that many optimizer steps by repeating
the training data within the epoch (`Dataset.repeat()` and `fit(steps_per_epoch=...)`), so a
phase of E epochs runs at least E x `min_steps_per_epoch` steps. The number of epochs stays as
configured, so early stopping's patience, the unfreezing schedule, SWA and the validation
passes keep their meaning; only the LR schedule (per step) stretches with the epochs. Data of
`min_steps_per_epoch` batches or more is not touched: the floor does not bind there.

Example:
```python
budget = step_budget(FineTuneConfig(), batches_per_epoch=1, default_floor=16)
budget.steps_per_epoch, budget.record(head_epochs=1, fine_epochs=3)["fine"]
# 16, {"epochs": 3, "steps": 48}
```
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass
class StepBudget:
    """How many optimizer steps each epoch of a `fine_tune` run takes.

    Attributes:
        batches_per_epoch: batches in one pass over the training data.
        min_steps_per_epoch: the floor applied (the config's, else the strategy's).
        steps_per_epoch: the steps each epoch runs (`fit`'s `steps_per_epoch`).
        note: why the floor was not applied (explicit `steps_per_epoch`, data that cannot be
            repeated), else `""`.
    """

    batches_per_epoch: int
    min_steps_per_epoch: int
    steps_per_epoch: int
    note: str = ""

    @property
    def repeats(self) -> bool:
        """Whether the training data is repeated within an epoch."""
        return self.steps_per_epoch > self.batches_per_epoch

    def record(self, head_epochs: int, fine_epochs: int) -> dict:
        """Plain data for `FineTuneResult.budget`, metrics.json and the model card: per phase
        the epochs and optimizer steps that ran."""
        record = {"min_steps_per_epoch": self.min_steps_per_epoch,
                  "batches_per_epoch": self.batches_per_epoch,
                  "steps_per_epoch": self.steps_per_epoch,
                  "passes_per_epoch": round(self.steps_per_epoch / self.batches_per_epoch, 3),
                  "head": {"epochs": int(head_epochs),
                           "steps": int(head_epochs) * self.steps_per_epoch},
                  "fine": {"epochs": int(fine_epochs),
                           "steps": int(fine_epochs) * self.steps_per_epoch}}
        if self.note:
            record["note"] = self.note
        return record

    def describe(self) -> str:
        """`"8 per epoch: 1 batch(es) per pass over the training data, repeated to
        min_steps_per_epoch=8"`."""
        text = f"{self.steps_per_epoch} per epoch"
        if self.repeats:
            text += (f": {self.batches_per_epoch} batch(es) per pass over the training data, "
                     f"repeated to min_steps_per_epoch={self.min_steps_per_epoch}")
        elif self.note:
            text += f": {self.note}"
        return text


def step_budget(config, batches_per_epoch: int, *, default_floor: int, steps_per_epoch=None,
                repeatable: bool = True, data_kind: str = "") -> StepBudget:
    """The `StepBudget` of a run with `batches_per_epoch` batches per pass.

    Args:
        config: a `tlkit.FineTuneConfig` (its `min_steps_per_epoch`).
        batches_per_epoch: batches in one pass over the training data.
        default_floor: the floor when `config.min_steps_per_epoch` is null (the strategy's
            `Strategy.min_steps_per_epoch`).
        steps_per_epoch: the caller's own `steps_per_epoch` (wins: no floor).
        repeatable: whether the training data can be repeated (a `tf.data.Dataset` or arrays).
        data_kind: the training data's type name, for the note when it cannot be repeated.
    """
    floor = int(config.min_steps_per_epoch if config.min_steps_per_epoch is not None
                else default_floor)
    batches = max(int(batches_per_epoch), 1)
    if steps_per_epoch is not None:
        return StepBudget(batches, floor, int(steps_per_epoch),
                          note="steps_per_epoch given: no floor")
    if batches >= floor:
        return StepBudget(batches, floor, batches)
    if not repeatable:
        return StepBudget(batches, floor, batches, note=(
            f"a {data_kind or 'training data object'} cannot be repeated within an epoch, so "
            f"min_steps_per_epoch={floor} was not applied; pass a tf.data.Dataset or arrays"))
    return StepBudget(batches, floor, floor)


def repeated(train: tf.data.Dataset, budget: StepBudget) -> tf.data.Dataset:
    """`train` repeated when the budget needs more steps than one pass gives (a dataset that
    is shuffled each iteration is reshuffled on every pass)."""
    return train.repeat() if budget.repeats else train

