"""The one way every verb fills the settings a recipe leaves unset (null) for this machine.

`resolve_settings` is what `train`, `evaluate`, `report`, `export`, `predict`, `tune` and
`lr-find` call: the per-replica batch size and steps per execution from
`tlkit.distribute.distribution_plan`, then the global batch and learning rates across replicas.
"""

from __future__ import annotations

import dataclasses
import logging

from tlkit import distribute
from tlkit.recipes import Recipe

logger = logging.getLogger("tlkit")


def resolve_settings(recipe: Recipe, strategy=None) -> Recipe:
    """The recipe with every setting it leaves unset (null) filled for this machine, the one
    way every verb fills them (`train`, `evaluate`, `report`, `export`, `predict`, `tune`,
    `lr-find`): `data.batch_size` per replica from `tlkit.distribute.distribution_plan` (`resolve_batch`),
    then the global batch, `data.drop_remainder` on a TPU and the LRs scaled across replicas
    (`_per_replica`), then `distribute.steps_per_execution` (`resolve_execution`).

    Args:
        recipe: a `Recipe`.
        strategy: the `tf.distribute` strategy the verb runs under; default: the current one.

    Example:
    ```python
    recipe = resolve_settings(load_recipe("recipes/smoke.yaml"))
    recipe.data.batch_size  # 32 on a CPU when the recipe leaves it null
    ```
    """
    if strategy is None:
        import tensorflow as tf

        strategy = tf.distribute.get_strategy()
    return resolve_execution(_per_replica(resolve_batch(recipe, strategy), strategy), strategy)


def resolve_batch(recipe, strategy):
    """The recipe with `data.batch_size` (per replica) filled from `tlkit.distribute.distribution_plan`
    (the device's default: 32 on CPU, 64 on GPU, 128 per TPU core) when the recipe leaves it
    null."""
    if recipe.data.batch_size is not None:
        return recipe
    batch = distribute.distribution_plan(strategy).per_replica_batch
    logger.info("data.batch_size: %d per replica (tlkit.distribute.distribution_plan's default here)", batch)
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, batch_size=batch))


def resolve_execution(recipe, strategy):
    """The recipe with `distribute.steps_per_execution` filled from `tlkit.distribute.distribution_plan`
    (32 on a TPU, 1 elsewhere) when the recipe leaves it null."""
    cfg = recipe.distribute
    if cfg.steps_per_execution is not None:
        return recipe
    steps = distribute.distribution_plan(strategy, recipe.data.batch_size).steps_per_execution
    return dataclasses.replace(
        recipe, distribute=dataclasses.replace(cfg, steps_per_execution=steps)
    )


def _per_replica(recipe: Recipe, strategy) -> Recipe:
    """`data.batch_size` is per replica: the run uses batch x replicas (and scales the LRs by
    the replica count when `distribute.scale_lr`). On a TPU, training batches are static
    (`drop_remainder`) unless the recipe says otherwise."""
    if recipe.data.drop_remainder is None and distribute.is_tpu(strategy):
        recipe = dataclasses.replace(
            recipe, data=dataclasses.replace(recipe.data, drop_remainder=True)
        )
    replicas = int(strategy.num_replicas_in_sync)
    if replicas == 1:
        return recipe
    opt = recipe.optimizer
    scale = float(replicas) if recipe.distribute.scale_lr else 1.0
    optimizer = dataclasses.replace(
        opt,
        lr=opt.lr * scale,
        head_lr=opt.head_lr * scale if opt.head_lr is not None else None,
    )
    data = dataclasses.replace(recipe.data, batch_size=recipe.data.batch_size * replicas)
    logger.info("%d replicas: global batch %d, LR x%g", replicas, data.batch_size, scale)
    return dataclasses.replace(recipe, data=data, optimizer=optimizer)
