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
            keeps its gamma/beta fixed; `"train_affine"` trains the gamma/beta of the scopes that
            train (all of them without `trainable_patterns`), with the
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
        self._input_specs = _traced_input_specs(self._func, signature)
        leaves = [s for s in tf.nest.flatten(self._input_specs) if isinstance(s, tf.TensorSpec)]
        floats = [s.dtype.name for s in leaves if s.dtype.is_floating]
        default = "string" if self.input_info.kind == "text" else "float32"
        # The dtype of a lone (or the first) input, and the one floating leaves are fed.
        self._input_dtype = leaves[0].dtype.name if leaves else default
        self._float_dtype = floats[0] if floats else "float32"
        self._output_specs = {}
        # String ops (a text SavedModel's tokenizer) have no XLA kernels: Keras then keeps
        # `jit_compile` off for the model instead of failing at the first step.
        self.supports_jit = not any(s.dtype == tf.string for s in leaves) and default != "string"
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
        """Gamma/beta follow `bn_policy`: fixed under `"frozen"`; under `"train_affine"` those of
        the scopes that train (a layer group with a trainable variable, or a name the
        `trainable_patterns` match) train; under `"update"` each keeps its own flag."""
        if self.bn_policy == "update":
            return
        affine = [v for v in self._hub_variables if v._tlkit_bn_affine]
        if self.bn_policy == "frozen":
            for var in affine:
                var.trainable = False
            return
        training = {id(v) for v in affine if v.trainable}  # matched by a pattern (or no patterns)
        for group in self.layer_groups():
            if any(v.trainable and not v._tlkit_bn_affine for v in group.variables):
                training.update(id(v) for v in group.variables if v._tlkit_bn_affine)
        for var in affine:
            var.trainable = id(var) in training

    def set_trainable_patterns(self, patterns):
        """Trains only the SavedModel variables whose names match one of `patterns`.

        BatchNorm gamma/beta still follow `bn_policy`: fixed under the default `"frozen"`; under
        `"train_affine"` only those of the scopes the patterns unfreeze train. A variable outside
        those scopes never trains, whatever the policy.
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
        """The SavedModel's output, fed the dtypes it was traced for and cast to the compute dtype.

        `inputs` and the outputs may be any nest (a tensor, a dict, a list or tuple). Under a
        mixed policy Keras hands this layer `bfloat16`/`float16` inputs, but a SavedModel only
        has the concrete functions it was traced with (float32), so each floating input leaf is
        cast to the dtype traced for it, strings and integers pass as they are, and each floating
        output leaf is handed on in the layer's compute dtype (structure kept).
        """
        kwargs = dict(self.arguments)
        if self._has_training:
            kwargs["training"] = training
        inputs = self._cast_inputs(inputs)
        if self.signature and isinstance(inputs, dict):
            outputs = self._func(**inputs, **kwargs)  # signatures take keyword arguments only
        else:
            outputs = self._func(inputs, **kwargs)
        if isinstance(outputs, dict):
            key = self._pick_key(outputs)
            if key is not None:
                outputs = outputs[key]
        return tf.nest.map_structure(self._cast_output, outputs)

    def _traced_leaves(self, nest) -> list:
        """Per leaf of `nest`, the `tf.TensorSpec` the SavedModel traced for it; all `None`
        where `nest` does not have the traced structure."""
        try:
            tf.nest.assert_same_structure(nest, self._input_specs, check_types=False)
            return tf.nest.flatten(self._input_specs)
        except (TypeError, ValueError):
            return [None] * len(tf.nest.flatten(nest))

    def _cast_inputs(self, inputs):
        inputs = tf.nest.map_structure(tf.convert_to_tensor, inputs)
        specs = self._traced_leaves(inputs)
        leaves = [
            tf.cast(x, self._leaf_float_dtype(spec))
            if x.dtype.is_floating and x.dtype.name != self._leaf_float_dtype(spec)
            else x
            for x, spec in zip(tf.nest.flatten(inputs), specs)
        ]
        return tf.nest.pack_sequence_as(inputs, leaves)

    def _leaf_float_dtype(self, spec) -> str:
        if isinstance(spec, tf.TensorSpec) and spec.dtype.is_floating:
            return spec.dtype.name
        return self._float_dtype

    def _cast_output(self, x):
        x = tf.convert_to_tensor(x) if not isinstance(x, tf.RaggedTensor) else x
        if x.dtype.is_floating and x.dtype != self.compute_dtype:
            return tf.cast(x, self.compute_dtype)
        return x

    def call(self, inputs, training=None):
        outputs = self._forward(inputs, self._training_flag(training))
        if self.trainable and any(v.trainable for v in self._hub_variables):
            for loss_fn in getattr(self._obj, "regularization_losses", []):
                self.add_loss(loss_fn())
        return outputs

    def _input_spec_for(self, input_shape):
        """`tf.TensorSpec`s for a (nest of) input shape(s), with the dtypes traced for them."""
        shapes = _shape_nest(input_shape)
        traced = self._traced_leaves(shapes)
        specs = [
            tf.TensorSpec(shape, spec.dtype if isinstance(spec, tf.TensorSpec) else self._input_dtype)
            for shape, spec in zip(tf.nest.flatten(shapes), traced)
        ]
        return tf.nest.pack_sequence_as(shapes, specs)

    def _output_spec(self, input_shape):
        """Output spec(s) for `input_shape`, traced once without running the SavedModel.

        Any nest in, any nest out. The batch size follows Keras's convention (full input shape
        in, full output shape out): an output whose leading dimension the trace leaves unknown
        (string inputs, ragged ops) gets the input's batch size.
        """
        shapes = _shape_nest(input_shape)
        key = repr(shapes)
        if key not in self._output_specs:
            specs = self._input_spec_for(shapes)
            traced = tf.function(lambda x: self._forward(x, False)).get_concrete_function(specs)
            first = tf.nest.flatten(shapes)[0] if tf.nest.flatten(shapes) else None
            batch = first[0] if first is not None and first.rank else None

            def spec_of(out):
                dims = out.shape.as_list() if out.shape.rank is not None else None
                if dims and dims[0] is None and batch is not None:
                    dims[0] = batch
                return tf.TensorSpec(dims, out.dtype)

            self._output_specs[key] = tf.nest.map_structure(spec_of, traced.structured_outputs)
        return self._output_specs[key]

    def compute_output_shape(self, input_shape):
        # Needed by wrappers such as `keras.layers.TimeDistributed` (float or string inputs, any
        # nest; a dict output is reduced to `output_key` by `_forward`).
        return tf.nest.map_structure(
            lambda spec: tuple(spec.shape.as_list()), self._output_spec(input_shape)
        )

    def compute_output_spec(self, inputs, training=None):
        shapes = tf.nest.map_structure(lambda x: tf.TensorShape(x.shape), inputs)
        return tf.nest.map_structure(
            lambda spec: keras.KerasTensor(tuple(spec.shape.as_list()), dtype=spec.dtype.name),
            self._output_spec(shapes),
        )

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
        return None  # no usual key: the whole dict is the output, as with `hub.KerasLayer`

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


def _traced_input_specs(func, signature):
    """The (nest of) `tf.TensorSpec` the SavedModel's first input was traced for, if recorded.

    A signature takes keyword arguments: its specs are the dict of them (or the lone spec).
    """
    if signature:
        args, kwargs = func.structured_input_signature
        if kwargs:
            return next(iter(kwargs.values())) if len(kwargs) == 1 else dict(kwargs)
        return args[0] if args else None
    # The restored `__call__` keeps every concrete function it was saved with.
    for fn in list(getattr(func.__call__, "concrete_functions", None) or []):
        args, _ = fn.structured_input_signature
        if args:
            return args[0]
    return None


def _shape_nest(input_shape):
    """`input_shape` (Keras hands shapes as tuples/lists) as a nest of `tf.TensorShape` leaves."""
    if isinstance(input_shape, dict):
        return {k: _shape_nest(v) for k, v in input_shape.items()}
    if isinstance(input_shape, (list, tuple)) and input_shape and all(
        isinstance(d, (list, tuple, dict)) for d in input_shape
    ):
        return type(input_shape)(_shape_nest(v) for v in input_shape)
    return tf.TensorShape(input_shape)  # a leaf for `tf.nest`, unlike a tuple


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
