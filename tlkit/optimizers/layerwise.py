"""Discriminative (layer-wise) learning rates for Keras 3 optimizers.

Keras 3 has no per-layer learning rates (keras#21741; tensorflow-addons' `MultiOptimizer` was
Keras 2 only). Keras 3.15's `keras.optimizers.MultiOptimizer` does not fit fine-tuning: it
insists on a gradient for *every* variable it was built with (so gradual unfreezing, which
differentiates only the unfrozen groups, fails), it keeps one optimizer (state, step counter,
schedule) per variable set, and it has no `learning_rate`, which breaks LR callbacks and
`tlkit.lr_find`. Hence this hand-written mechanism:

Every Keras 3 optimizer updates each variable through `update_step(gradient, variable,
learning_rate)`. A `Layerwise<Optimizer>` subclass multiplies `learning_rate` there by the
variable's multiplier, so the multiplier scales the *update*, not the gradient (Adam and RMSprop
are invariant to gradient scale, so scaling the gradient would do nothing). The learning rate
stays one value (float, variable or `LearningRateSchedule`): the effective LR of a variable is
`schedule(step) * multiplier`. Multipliers are stored by `variable.path`, so they are part of
the optimizer's config and survive `model.save` / `keras.models.load_model`.

Decoupled weight decay (`AdamW`, or `weight_decay=` on any optimizer) is applied by Keras as
`w -= w * weight_decay * lr` with the global LR. With `scale_weight_decay=True` (default) tlkit
applies it per variable with the scaled LR instead, `w -= w * weight_decay * lr * multiplier`, at
the same point (just before the update), which is what "a lower LR for this group" means for
decoupled decay (as in PyTorch parameter groups).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from tlkit import trainability


class LayerwiseMixin:
    """Scales each variable's learning rate (and weight decay) by its multiplier.

    Mixed into a Keras optimizer class (`LayerwiseAdam = (LayerwiseMixin, keras.optimizers.Adam)`).

    Args:
        lr_multipliers: `{variable.path: multiplier}`; variables not listed use 1.0.
        scale_weight_decay: apply decoupled weight decay with the scaled LR (see module doc).
        *args, **kwargs: the base optimizer's arguments.
    """

    def __init__(self, *args, lr_multipliers=None, scale_weight_decay=True, **kwargs):
        super().__init__(*args, **kwargs)
        multipliers = {}
        for path, value in dict(lr_multipliers or {}).items():
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"Expected learning-rate multipliers >= 0. Received: {path!r}: {value}"
                )
            multipliers[str(path)] = value
        self._lr_multipliers = multipliers
        self.scale_weight_decay = bool(scale_weight_decay)
        self._multiplier_by_key = {}

    @property
    def lr_multipliers(self) -> dict:
        """`{variable.path: multiplier}` (variables not listed use 1.0)."""
        return dict(self._lr_multipliers)

    def build(self, variables):
        if self.built:
            return
        # Keys as the optimizer itself identifies variables: under tf.distribute, `update_step`
        # receives per-replica `tf.Variable`s, which `_var_key` maps back to the same key.
        self._multiplier_by_key = {
            self._var_key(v): self._lr_multipliers.get(v.path, 1.0) for v in variables
        }
        super().build(variables)

    def lr_multiplier(self, variable) -> float:
        """The multiplier applied to `variable` (1.0 when unknown)."""
        key = self._var_key(variable)
        if key in self._multiplier_by_key:
            return self._multiplier_by_key[key]
        return self._lr_multipliers.get(getattr(variable, "path", None), 1.0)

    def _apply_weight_decay(self, variables):
        if self.scale_weight_decay:
            return  # applied per variable, with its multiplier, in `update_step`
        super()._apply_weight_decay(variables)

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.lr_multiplier(variable)
        if multiplier != 1.0:
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), multiplier)
        if (
            self.scale_weight_decay
            and self.weight_decay is not None
            and self._use_weight_decay(variable)
        ):
            lr = ops.cast(learning_rate, variable.dtype)
            wd = ops.cast(self.weight_decay, variable.dtype)
            self.assign_sub(variable, ops.multiply(variable, ops.multiply(wd, lr)))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = dict(self._lr_multipliers)
        config["scale_weight_decay"] = self.scale_weight_decay
        return config


def _layerwise_class(base):
    return type(
        f"Layerwise{base.__name__}",
        (LayerwiseMixin, base),
        {
            "__doc__": f"`keras.optimizers.{base.__name__}` with per-variable learning-rate "
            "multipliers; see `tlkit.optimizers.layerwise`.",
            "__module__": __name__,
        },
    )


_CLASSES: dict = {}  # Keras optimizer class -> its Layerwise subclass


def _register(base):
    cls = keras.saving.register_keras_serializable("tlkit")(_layerwise_class(base))
    _CLASSES[base] = cls
    return cls


# The built-in optimizers, registered so saved models reload without calling `layerwise` first.
LayerwiseAdam = _register(keras.optimizers.Adam)
LayerwiseAdamW = _register(keras.optimizers.AdamW)
LayerwiseSGD = _register(keras.optimizers.SGD)
LayerwiseRMSprop = _register(keras.optimizers.RMSprop)
LayerwiseNadam = _register(keras.optimizers.Nadam)
LayerwiseAdamax = _register(keras.optimizers.Adamax)
LayerwiseAdagrad = _register(keras.optimizers.Adagrad)
LayerwiseLion = _register(keras.optimizers.Lion)


def layerwise_class(optimizer_class):
    """The `Layerwise<Name>` subclass of a Keras optimizer class.

    Built-in classes map to the registered `LayerwiseAdam`, `LayerwiseSGD`, ...; another class
    gets a subclass made (and registered as `tlkit>Layerwise<Name>`) on first use, so a saved
    model with it reloads in a process that called `layerwise` (or this function) first.
    """
    if issubclass(optimizer_class, LayerwiseMixin):
        return optimizer_class
    if optimizer_class in _CLASSES:
        return _CLASSES[optimizer_class]
    if not issubclass(optimizer_class, keras.optimizers.Optimizer) or issubclass(
        optimizer_class, (keras.optimizers.LossScaleOptimizer, keras.optimizers.MultiOptimizer)
    ):
        raise TypeError(
            "Expected a Keras optimizer class with an `update_step` (Adam, SGD, ...). "
            f"Received: {optimizer_class.__name__}"
        )
    return _register(optimizer_class)


def group_lr_multipliers(model, decay=None, multipliers=None) -> dict[str, float]:
    """Learning-rate multiplier of each layer group of `model`.

    Args:
        model: a tlkit model (or any Keras model; see `tlkit.trainability.layer_groups`).
        decay: ULMFiT-style decay: the group `k` groups below the top one (the head) gets
            `1 / decay**k` (ULMFiT uses 2.6).
        multipliers: `{group name: multiplier}`; overrides `decay` for the groups it names.
            Groups named in neither get 1.0.

    Returns:
        `{group name: multiplier}` for every group, input to output.
    """
    groups = trainability.layer_groups(model)
    names = [g.name for g in groups]
    if decay is None and multipliers is None:
        raise ValueError("Pass `decay=` (e.g. 2.6) and/or `multipliers={group: factor}`.")
    result = {name: 1.0 for name in names}
    if decay is not None:
        decay = float(decay)
        if not decay > 0:
            raise ValueError(f"Expected `decay` > 0. Received: decay={decay}")
        for k, name in enumerate(reversed(names)):
            result[name] = 1.0 / decay**k
    if multipliers:
        unknown = set(multipliers) - set(names)
        if unknown:
            raise ValueError(
                f"Unknown layer group(s) {sorted(unknown)} in `multipliers`. The model's groups "
                f"are {names}."
            )
        result.update({k: float(v) for k, v in multipliers.items()})
    return result


def variable_lr_multipliers(model, decay=None, multipliers=None) -> dict[str, float]:
    """`{variable.path: multiplier}` for the model's variables (see `group_lr_multipliers`)."""
    per_group = group_lr_multipliers(model, decay=decay, multipliers=multipliers)
    out: dict[str, float] = {}
    for group in trainability.layer_groups(model):
        value = per_group[group.name]
        for variable in group.variables:
            if variable.path in out and out[variable.path] != value:
                raise ValueError(
                    f"Two variables share the path {variable.path!r} but sit in groups with "
                    "different multipliers. Give their layers unique names."
                )
            out[variable.path] = value
    return out


def layerwise(optimizer, model, decay=None, multipliers=None, scale_weight_decay=True):
    """Returns `optimizer` with discriminative (layer-wise) learning rates for `model`'s groups.

    The result is a new, unbuilt optimizer of class `Layerwise<Name>` with the same config;
    each variable's update uses `learning_rate * multiplier` of its group (fastai's
    `slice(lo, hi)`, ULMFiT's discriminative fine-tuning). Works with float LRs, LR schedules
    (schedule value x multiplier), `LossScaleOptimizer` (mixed precision; the inner optimizer is
    converted and re-wrapped), gradual unfreezing and `tf.distribute` strategies.

    Args:
        optimizer: a Keras optimizer instance (not yet built) or name (`"adam"`, `"sgd"`, ...).
        model: the model whose `tlkit.trainability.layer_groups` define the groups.
        decay: group `k` below the top group (the head) gets `1 / decay**k`; ULMFiT: 2.6.
        multipliers: `{group name: multiplier}`, e.g. `{"head": 1.0, "block_16": 0.5}`;
            overrides `decay` for those groups; unnamed groups get 1.0 (or their decay value).
        scale_weight_decay: scale decoupled weight decay with the multiplier too.

    Returns:
        A `keras.optimizers.Optimizer`, to pass to `model.compile`.

    Example:
    ```python
    optimizer = tlkit.optimizers.layerwise(keras.optimizers.Adam(1e-3), model, decay=2.6)
    tlkit.compile_model(model, optimizer=optimizer)
    ```
    """
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            f"Expected a Keras optimizer or its name. Received: {type(optimizer).__name__}"
        )
    if optimizer.built:
        raise ValueError(
            f"The optimizer {optimizer.name!r} is already built (it has state). Pass a new, "
            "unbuilt optimizer to `layerwise`."
        )
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        inner = layerwise(
            optimizer.inner_optimizer, model, decay, multipliers, scale_weight_decay
        )
        return keras.optimizers.LossScaleOptimizer(
            inner,
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
            name=optimizer.name,
        )
    cls = layerwise_class(type(optimizer))
    config = optimizer.get_config()
    config["lr_multipliers"] = variable_lr_multipliers(model, decay=decay, multipliers=multipliers)
    config["scale_weight_decay"] = scale_weight_decay
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    with strategy.scope():
        return cls.from_config(config)
