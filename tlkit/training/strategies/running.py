"""The calls `fine_tune` and the recipe runner make on a strategy, by its configured name."""

from __future__ import annotations

from tlkit.training.strategies.base import StrategyChoice, StrategyContext
from tlkit.training.strategies.registry import get


def prepare(model, config, train, validation, compile_args, *, batch_size=32,
            explicit_schedule=False, feature_cache=None,
            examples_per_class=None, unlabeled=None, fine_tune=None) -> StrategyChoice:
    """Runs what `config.strategy` needs before the `fit` and returns its `StrategyChoice`.

    Args:
        model, config, train, validation: as `tlkit.fine_tune` got them.
        compile_args: `model.compile` arguments for the strategy's trial fits and checks.
        batch_size: the global batch size for array data.
        explicit_schedule: the caller gives an `UnfreezeSchedule` (`auto` honours it).
        feature_cache: `{"dir": .., "fingerprints": {"train": .., "val": ..}}` where the probe
            keeps its features, or `None`.
        examples_per_class: the smallest class count of `train` when the caller knows it.
        unlabeled: unbatched dataset of unlabelled inputs, or `None`.
        fine_tune: `(train, validation, config) -> FineTuneResult` for strategies that run a
            fit of their own (`self_training`'s teacher), or `None`.

    Example:
    ```python
    choice = prepare(model, tlkit.FineTuneConfig(strategy="lp_ft"), train, val,
                     {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]})
    choice.to_record()["strategy"]  # "lp_ft"
    ```
    """
    context = StrategyContext(model=model, config=config, train=train, validation=validation,
                              compile_args=compile_args, batch_size=batch_size,
                              explicit_schedule=explicit_schedule, feature_cache=feature_cache,
                              examples_per_class=examples_per_class, unlabeled=unlabeled,
                              fine_tune=fine_tune)
    return get(config.strategy).prepare(context)


def finish(model, choice: StrategyChoice, validation) -> None:
    """After the `fit`: what the requested strategy does then (`auto` may keep the probe)."""
    get(choice.requested).finish(model, choice, validation)


def planned(config, head=None, *, distribution=None, examples_per_class=None) -> str:
    """The name of the strategy a run expects to run, before any data is read (`auto`
    resolved as far as the config, head, distribution and class count tell).

    Example:
    ```python
    planned(tlkit.FineTuneConfig(strategy="full"))  # "full"
    ```
    """
    return get(config.strategy).planned(config, head, distribution=distribution,
                                        examples_per_class=examples_per_class)


def segments(config, num_groups, *, batch_norm=True, cached_features=False, record=None,
             name=None) -> list[dict]:
    """What trains when, for reports (`Strategy.segments`), following `record` (what ran,
    `StrategyChoice.to_record()`) when given, else `name`, else `config.strategy`."""
    name = (record or {}).get("strategy") or name or config.strategy
    return get(name).segments(config, num_groups, batch_norm=batch_norm,
                              cached_features=cached_features, record=record)
