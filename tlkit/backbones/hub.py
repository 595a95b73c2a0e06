"""`HubBackbone`: a Keras 3 layer over a TF2 reusable SavedModel (TF-Hub / Kaggle handle or folder).

`hub.KerasLayer` is a tf_keras (Keras 2) layer and cannot live in a Keras 3 model
(tensorflow/hub#903, #920); `keras.layers.TFSMLayer` never passes `training` and needs
`safe_mode=False` to reload. Nothing in the ecosystem does this, hence this hand-written layer:
it loads the SavedModel with `tf.saved_model.load` (handles resolved by `tlkit._hub_cache` into
TF-Hub's cache layout, so `TFHUB_CACHE_DIR` works, without importing `tensorflow_hub`, which
needs Keras 2), exposes the SavedModel's own variables as Keras weights (so they train,
save and reload), passes `training`, adds `regularization_losses`, and keeps the handle in its
config so `keras.models.load_model` rebuilds it in safe mode.
"""

from __future__ import annotations

import inspect
import os
import re

import keras
import tensorflow as tf

from tlkit import _hub_cache
from tlkit import groups as groups_lib
from tlkit._handles import is_hub_handle, is_keras_hub_handle, keras_hub_preset
from tlkit.backbones.base import Backbone

DEFAULT_OUTPUT_KEYS = ("default", "pooled_output", "output", "outputs", "embedding")
_BN_STAT = re.compile(r"moving_(mean|variance)|batch_norm.*(mean|variance)", re.IGNORECASE)
# BatchNorm gamma/beta by variable name: a `gamma`/`beta` (or `scale`/`offset`) leaf under a scope
# such as `BatchNorm`, `batch_normalization_3`, `tpu_batch_normalization`, `bn`, `block1a_bn`.
# LayerNorm (`LayerNorm/gamma`) does not match. `bn_patterns=` overrides it for odd names.
_BN_AFFINE = re.compile(
    r"(^|/)[^/]*(batch_?norm|batch_normalization|(^|[_/])bn\d*)[^/]*/(gamma|beta|scale|offset)$",
    re.IGNORECASE,
)


class HubHandleError(OSError):
    """A TF-Hub / Kaggle handle could not be resolved (typically: no network)."""


class _SavedModelVariable(keras.Variable):
    """A Keras variable whose storage *is* a SavedModel's `tf.Variable` (no copy).

    The restored functions of the SavedModel read that very `tf.Variable`, so updating this
    Keras variable (optimizer, `load_weights`) changes what the SavedModel computes.
    """

    def __init__(self, tf_variable, name, trainable):
        self._tf_variable = tf_variable
        super().__init__(
            initializer=lambda shape, dtype: None,
            shape=tf_variable.shape,
            dtype=tf_variable.dtype.name,
            trainable=trainable,
            name=name,
        )

    def _initialize(self, value):
        self._value = self._tf_variable


def resolve_handle(handle: str) -> str:
    """Returns a local SavedModel folder for `handle`, with errors that say what to do."""
    if not isinstance(handle, str) or not handle:
        raise ValueError(f"Expected a TF-Hub handle or SavedModel folder. Received: {handle!r}")
    local = handle[len("file://") :] if handle.startswith("file://") else handle
    if is_keras_hub_handle(handle):
        raise ValueError(
            f"{handle!r} is a KerasHub preset, not a TF-Hub SavedModel: load it with "
            "tlkit.backbones.get (or from_keras_hub), or in a recipe as backbone.name: "
            f"keras_hub:{keras_hub_preset(handle)}"
        )
    if not is_hub_handle(handle):
        if not os.path.exists(local):
            raise FileNotFoundError(
                f"SavedModel folder not found: {local!r}. Pass an existing folder that holds "
                "`saved_model.pb`, or a tfhub.dev / Kaggle handle."
            )
        if not os.path.exists(os.path.join(local, "saved_model.pb")):
            raise ValueError(
                f"{local!r} is not a SavedModel folder (no `saved_model.pb` inside). "
                "Export one with `tf.saved_model.save(module, path)`."
            )
        return local
    try:
        return _hub_cache.resolve(handle)
    except Exception as err:  # urllib/HTTP/DNS errors of every kind: re-raised as one clear error
        cache = _hub_cache.cache_dir()
        raise HubHandleError(
            f"Could not fetch the TF-Hub handle {handle!r} ({type(err).__name__}: {err}). "
            "This machine may be offline. Download the model where there is network and pass its "
            f"local folder instead, or set TFHUB_CACHE_DIR to a cache that already holds it "
            f"(now: {cache})."
        ) from None


@keras.saving.register_keras_serializable(package="tlkit")
class HubBackbone(Backbone):
    """A Keras 3 layer around a TF2 reusable SavedModel.

    Args:
        handle: tfhub.dev / Kaggle handle, `file://` URL or local SavedModel folder.
        output_key: key to pick when the SavedModel returns a dict (default: the first of
            `default`, `pooled_output`, `output`, ... present).
        signature: name of a signature to call instead of `__call__` (no `training` then).
        arguments: extra keyword arguments for the call.
        trainable: whether the SavedModel's trainable variables train.
        trainable_patterns: optional regexes over SavedModel variable names; when given, only
            matching variables train (e.g. `["block_16/.*"]`), since a SavedModel has no
            `.layers` (tensorflow/hub#852).
        bn_policy: what the SavedModel's BatchNorm does, as for Keras backbones (see
            `tlkit.trainability.set_trainable`): `"frozen"` (default) runs it in inference mode and
            keeps its gamma/beta fixed; `"train_affine"` trains gamma/beta everywhere with the
            statistics frozen; `"update"` passes `training=True` while training and lets
            gamma/beta follow their group.
        bn_patterns: optional regexes over SavedModel variable names that pick the BatchNorm
            gamma/beta variables, for SavedModels that name them oddly. Default: a `gamma` /
            `beta` under a scope named like `BatchNorm`, `batch_normalization` or `bn`.
        input_info, group_rules: see `Backbone`. `group_rules` match variable names; default:
            groups by the first name scope.

    Example:
    ```python
    backbone = HubBackbone("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",
                           input_info=InputInfo(image_size=(224, 224), value_range=(0, 1)))
    model = keras.Sequential([keras.Input((224, 224, 3)), backbone, keras.layers.Dense(5)])
    ```
    """

    def __init__(
        self,
        handle,
        output_key=None,
        signature=None,
        arguments=None,
        trainable=False,
        trainable_patterns=None,
        bn_policy="frozen",
        input_info=None,
        group_rules=None,
        variable_trainable=None,
        bn_patterns=None,
        **kwargs,
    ):
        # No fixed default name: Keras makes `hub_backbone`, `hub_backbone_1`, ... unique, so two
        # hub layers fit in one model (two towers, an ensemble).
        super().__init__(input_info=input_info, group_rules=group_rules, trainable=trainable, **kwargs)
        self.handle = handle
        self.output_key = output_key
        self.signature = signature
        self.arguments = dict(arguments or {})
        if bn_policy not in groups_lib.BN_POLICIES:
            raise ValueError(
                f"Expected `bn_policy` in {groups_lib.BN_POLICIES}. Received: bn_policy={bn_policy!r}"
            )
        self.bn_policy = bn_policy
        self.bn_patterns = list(bn_patterns) if bn_patterns else None
        self.trainable_patterns = list(trainable_patterns) if trainable_patterns else None
        self._obj = tf.saved_model.load(resolve_handle(handle))
        if signature:
            if signature not in self._obj.signatures:
                raise ValueError(
                    f"SavedModel {handle!r} has no signature {signature!r}. "
                    f"Available: {sorted(self._obj.signatures)}"
                )
            self._func = self._obj.signatures[signature]
            self._has_training = False
        else:
            if not callable(self._obj):
                raise ValueError(
                    f"SavedModel {handle!r} is not callable (no `__call__`). Pass `signature=` "
                    f"with one of {sorted(self._obj.signatures)}."
                )
            self._func = self._obj
            self._has_training = _accepts_training(self._obj)
        self._input_dtype = _traced_input_dtype(self._func, signature) or (
            "string" if self.input_info.kind == "text" else "float32"
        )
        self._output_specs = {}
        # String ops (a text SavedModel's tokenizer) have no XLA kernels: Keras then keeps
        # `jit_compile` off for the model instead of failing at the first step.
        self.supports_jit = self._input_dtype != "string"
        self._wrap_variables()
        if self.trainable_patterns:
            self.set_trainable_patterns(self.trainable_patterns)
        else:
            self._apply_bn_policy()
        if variable_trainable is not None:  # per-variable state saved by `get_config`
            if len(variable_trainable) != len(self._hub_variables):
                raise ValueError(
                    f"{handle!r} has {len(self._hub_variables)} variables but the saved config "
                    f"lists {len(variable_trainable)}: the SavedModel changed since saving."
                )
            for var, flag in zip(self._hub_variables, variable_trainable):
                var.trainable = bool(flag) and not var._tlkit_always_frozen
        self.built = True

    # -- variables ---------------------------------------------------------------------------
    def _wrap_variables(self):
        trainable_refs = {v.ref() for v in getattr(self._obj, "trainable_variables", [])}
        self.variable_names = []
        self._hub_variables = []
        seen = set()
        for i, tf_var in enumerate(getattr(self._obj, "variables", [])):
            if tf_var.ref() in seen:
                continue
            seen.add(tf_var.ref())
            original = tf_var.name.split(":")[0]
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", original) or f"var{i}"
            hub_trainable = tf_var.ref() in trainable_refs
            var = _SavedModelVariable(tf_var, name=safe, trainable=hub_trainable)
            # tlkit never makes a SavedModel's non-trainable variable (BN statistics) trainable.
            var._tlkit_always_frozen = not hub_trainable
            var._tlkit_bn_affine = hub_trainable and self._is_bn_affine(original)
            self._track_variable(var)
            self.variable_names.append(original)
            self._hub_variables.append(var)
        self._has_bn_stats = any(_BN_STAT.search(n) for n in self.variable_names)

    def _is_bn_affine(self, name) -> bool:
        if self.bn_patterns:
            return any(re.match(p, name) for p in self.bn_patterns)
        return bool(_BN_AFFINE.search(name))

    def _apply_bn_policy(self):
        """Gamma/beta follow `bn_policy` (fixed when `"frozen"`, trained when `"train_affine"`)."""
        if self.bn_policy == "update":
            return
        for var in self._hub_variables:
            if var._tlkit_bn_affine:
                var.trainable = self.bn_policy == "train_affine"

    def set_trainable_patterns(self, patterns):
        """Trains only the SavedModel variables whose names match one of `patterns`.

        BatchNorm gamma/beta still follow `bn_policy` (fixed under the default `"frozen"`).
        """
        compiled = [re.compile(p) for p in patterns]
        self.trainable = True
        for name, var in zip(self.variable_names, self._hub_variables):
            if var._tlkit_always_frozen:
                continue
            var.trainable = any(p.match(name) for p in compiled)
        self._apply_bn_policy()

    def layer_groups(self):
        names = self.variable_names
        pairs = [(n, v) for n, v in zip(names, self._hub_variables)]
        if self.group_rules:
            rules = [(re.compile(p), t) for p, t in self.group_rules]

            def key(name):
                for pattern, template in rules:
                    m = pattern.match(name)
                    if m:
                        return m.expand(template)
                return None
        else:

            def key(name):
                return name.split("/")[0] if "/" in name else None

        keys = [key(n) for n, _ in pairs]
        if len({k for k in keys if k}) < 2:
            return _chunk_variables(pairs, 4)
        groups = []
        for (_, var), k in zip(pairs, keys):
            k = k or (groups[-1].name if groups else next(x for x in keys if x))
            if groups and groups[-1].name == k:
                groups[-1].variables.append(var)
            elif any(g.name == k for g in groups):
                next(g for g in groups if g.name == k).variables.append(var)
            else:
                groups.append(groups_lib.LayerGroup(k, variables=[var]))
        return groups

    def _on_trainable_groups_changed(self, bn_policy):
        self.bn_policy = bn_policy

    # -- forward -------------------------------------------------------------------------------
    def _training_flag(self, training) -> bool:
        if not training or not self.trainable:
            return False
        if self._has_bn_stats and self.bn_policy != "update":
            return False
        return any(v.trainable for v in self._hub_variables)

    def _forward(self, inputs, training):
        """The SavedModel's output, fed the dtype it was traced for and cast to the compute dtype.

        Under a mixed policy Keras hands this layer `bfloat16`/`float16` inputs, but a SavedModel
        only has the concrete functions it was traced with (float32), so the inputs are cast back
        and the outputs are handed on in the layer's compute dtype.
        """
        kwargs = dict(self.arguments)
        if self._has_training:
            kwargs["training"] = training
        inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype.is_floating and inputs.dtype != self._input_dtype:
            inputs = tf.cast(inputs, self._input_dtype)
        outputs = self._func(inputs, **kwargs)
        if isinstance(outputs, dict):
            outputs = outputs[self._pick_key(outputs)]
        if outputs.dtype.is_floating and outputs.dtype != self.compute_dtype:
            outputs = tf.cast(outputs, self.compute_dtype)
        return outputs

    def call(self, inputs, training=None):
        outputs = self._forward(inputs, self._training_flag(training))
        if self.trainable and any(v.trainable for v in self._hub_variables):
            for loss_fn in getattr(self._obj, "regularization_losses", []):
                self.add_loss(loss_fn())
        return outputs

    def _output_spec(self, input_shape) -> tf.TensorSpec:
        """Output shape and dtype for `input_shape`, traced once without running the SavedModel."""
        key = tuple(input_shape)
        if key not in self._output_specs:
            spec = tf.TensorSpec([None if d is None else int(d) for d in key], self._input_dtype)
            traced = tf.function(lambda x: self._forward(x, False)).get_concrete_function(spec)
            out = traced.structured_outputs
            self._output_specs[key] = tf.TensorSpec(out.shape, out.dtype)
        return self._output_specs[key]

    def compute_output_shape(self, input_shape):
        # Needed by wrappers such as `keras.layers.TimeDistributed` (float or string inputs; a
        # dict output is reduced to `output_key` by `_forward`).
        return tuple(self._output_spec(input_shape).shape.as_list())

    def compute_output_spec(self, inputs, training=None):
        spec = self._output_spec(inputs.shape)
        return keras.KerasTensor(tuple(spec.shape.as_list()), dtype=spec.dtype.name)

    def _pick_key(self, outputs):
        if self.output_key:
            if self.output_key not in outputs:
                raise ValueError(
                    f"output_key={self.output_key!r} is not an output of {self.handle!r}. "
                    f"Available: {sorted(outputs)}"
                )
            return self.output_key
        for key in DEFAULT_OUTPUT_KEYS:
            if key in outputs:
                return key
        raise ValueError(
            f"{self.handle!r} returns a dict; pass `output_key=` with one of {sorted(outputs)}."
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "handle": self.handle,
                "output_key": self.output_key,
                "signature": self.signature,
                "arguments": self.arguments,
                "trainable_patterns": self.trainable_patterns,
                "bn_policy": self.bn_policy,
                "bn_patterns": self.bn_patterns,
                "variable_trainable": [bool(v.trainable) for v in self._hub_variables],
            }
        )
        return config


def _traced_input_dtype(func, signature) -> str | None:
    """The dtype of the first input the SavedModel's functions were traced for, if recorded."""
    if signature:
        functions = [func]
    else:  # the restored `__call__` keeps every concrete function it was saved with
        functions = list(getattr(func.__call__, "concrete_functions", None) or [])
    for fn in functions:
        args, kwargs = fn.structured_input_signature
        specs = [s for s in tf.nest.flatten((args, kwargs)) if isinstance(s, tf.TensorSpec)]
        if specs:
            return specs[0].dtype.name
    return None


def _accepts_training(obj) -> bool:
    try:
        spec = inspect.getfullargspec(obj.__call__)
    except TypeError:
        return False
    return "training" in spec.args or "training" in spec.kwonlyargs


def _chunk_variables(pairs, n):
    n = max(1, min(n, len(pairs)))
    size = -(-len(pairs) // n)
    return [
        groups_lib.LayerGroup(f"group{i}", variables=[v for _, v in pairs[i * size : (i + 1) * size]])
        for i in range(n)
        if pairs[i * size : (i + 1) * size]
    ]


def from_hub(handle, trainable=False, input_info=None, **kwargs) -> HubBackbone:
    """A Keras 3 backbone layer over a TF-Hub / Kaggle handle or a local SavedModel folder.

    Args:
        handle: tfhub.dev / Kaggle handle, `file://` URL or local SavedModel folder.
        trainable: whether the SavedModel's variables train (default: frozen).
        input_info: `InputInfo` or dict; default: images in `[0, 1]` of any size (the TF-Hub
            image convention). Use `InputInfo(kind="text", dtype="string")` for text encoders.
        **kwargs: see `HubBackbone` (`output_key`, `signature`, `trainable_patterns`, ...).

    Example:
    ```python
    backbone = tlkit.backbones.from_hub("path/to/saved_model", trainable_patterns=["block_16/.*"])
    ```
    """
    return HubBackbone(handle, trainable=trainable, input_info=input_info, **kwargs)
