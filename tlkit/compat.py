"""Workarounds for Keras 3.15 (with TensorFlow 2.21), in one place.

Each one says what fails without it and which test shows when Keras fixes (or breaks) it again:
- `set_trainable_flag`: `layer.trainable = value` that always recurses (tests/unfreeze/test_unfreeze_callback.py).
- `apply_keras_fixes`: `fit()` under `MultiWorkerMirroredStrategy` (tests/distribute/test_multiworker_resume.py).
"""

from __future__ import annotations

import tensorflow as tf


def set_trainable_flag(layer, value: bool) -> None:
    """`layer.trainable = value` for `layer` and every sublayer, even where already equal.

    Keras 3's TensorFlow layers skip assigning an attribute its current object
    (`KerasAutoTrackable.__setattr__` short-circuits `self.x = self.x`), so `layer.trainable =
    True` on a layer that is already `True` neither recurses into sublayers nor resets variable
    flags. Calling the property setter on every layer avoids that.
    """
    for sublayer in layer._flatten_layers(include_self=True, recursive=True):
        type(sublayer).trainable.fset(sublayer, value)


def _symbolic_build_from_local_batch(self, iterator=None, data_batch=None):
    """Keras's `_maybe_symbolic_build`, taking one replica's batch instead of a cross-worker MEAN.

    Keras 3.15 reduces the first distributed batch with `strategy.reduce("MEAN", ...)` only to
    learn shapes; under `MultiWorkerMirroredStrategy` that reduce fails with "Attempt to convert a
    value (PerReplica...) to a Tensor" before the first step. One replica's batch has the same
    structure and per-example shapes, which is all the symbolic build needs.
    """
    if self._distribute_strategy is None:
        return
    if iterator is not None:
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tf.nest.map_structure(
                lambda x: self.distribute_strategy.experimental_local_results(x)[0]
                if isinstance(x, tf.distribute.DistributedValues)
                else x,
                batch,
            )
            break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _with_leading_axis(step):
    def wrapped(data):
        return tf.nest.map_structure(
            lambda v: tf.reshape(v, [1]) if isinstance(v, tf.Tensor) and v.shape.rank == 0 else v,
            step(data),
        )

    return wrapped


def apply_keras_fixes(model):
    """Works around known Keras 3 + tf.distribute failures on `model` (instance-level, no globals).

    - MultiWorkerMirroredStrategy: `fit()` fails in Keras's symbolic build (see
      `_symbolic_build_from_local_batch`); and after each step Keras reduces the (scalar) metric
      results with a hard-coded `strategy.reduce("MEAN", v, axis=0)`, which fails on scalars
      ("Invalid reduction dimension 0 for input with 0 dimensions"). The step outputs are given
      a leading axis of length 1, so that MEAN over axis 0 gives back the scalar (metric results
      are equal on every worker: sync-on-read variables). Both covered by
      tests/distribute/test_multiworker_resume.py, so a Keras fix or regression shows.

    Returns the model.
    """
    strategy = getattr(model, "distribute_strategy", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        import types

        model._maybe_symbolic_build = types.MethodType(_symbolic_build_from_local_batch, model)
        for name in ("train_step", "test_step"):
            setattr(model, name, _with_leading_axis(getattr(model, name)))
    return model
