"""Small optimizer helpers: a fresh copy of an optimizer, and its current step as an int."""

from __future__ import annotations

import keras


def clone_optimizer(optimizer, learning_rate=None):
    """A new, unbuilt optimizer of the same class and config (state is not copied).

    Args:
        optimizer: a Keras optimizer (a `LossScaleOptimizer` is cloned with its inner optimizer;
            layer-wise multipliers are part of the config and kept).
        learning_rate: replacement learning rate (float or `LearningRateSchedule`); `None` keeps
            the optimizer's own.

    Returns:
        The new optimizer. Create it inside the model's `distribute_strategy.scope()` when
        training under a strategy.

    Example:
    ```python
    sweep_optimizer = tlkit.optimizers.clone_optimizer(model.optimizer, learning_rate=1e-5)
    ```
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        inner = clone_optimizer(optimizer.inner_optimizer, learning_rate)
        return keras.optimizers.LossScaleOptimizer(
            inner,
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
            name=optimizer.name,
        )
    config = optimizer.get_config()
    if learning_rate is not None:
        config["learning_rate"] = learning_rate
    return type(optimizer).from_config(config)


def current_step(optimizer) -> int:
    """`optimizer.iterations` as a Python int (also for distributed and LossScale optimizers)."""
    return int(optimizer.iterations.numpy())  # not np.asarray(variable): numpy 2 warns (#36)
