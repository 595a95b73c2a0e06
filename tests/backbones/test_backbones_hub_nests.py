"""`HubBackbone` on SavedModels whose inputs and outputs are nests (dict in, list out, dict out),
in float32 and under `mixed_bfloat16`, through save and reload; the output shapes it reports; and
the BatchNorm policy under `trainable_patterns` (issue #28, re-expressed from tensorflow/hub's
`keras_layer_test.py` scenarios)."""

import importlib
import pkgutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit.backbones import InputInfo, from_hub


class _DictIn(tf.__internal__.tracking.AutoTrackable):
    """`{"left": (None, 2), "right": (None, 2)}` -> `(None, 3)`."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.left = tf.Variable(rng.normal(size=(2, 3)).astype("float32"), name="left/kernel")
        self.right = tf.Variable(rng.normal(size=(2, 3)).astype("float32"), name="right/kernel")

    @tf.function
    def __call__(self, inputs, training=False):
        return tf.matmul(inputs["left"], self.left) + tf.matmul(inputs["right"], self.right)


class _ListOut(tf.__internal__.tracking.AutoTrackable):
    """`(None, 4)` -> `[(None, 3), (None, None)]`: the second output's width is unknown when
    traced."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(1)
        self.kernel = tf.Variable(rng.normal(size=(4, 3)).astype("float32"), name="dense/kernel")

    @tf.function
    def __call__(self, x, training=False):
        h = tf.matmul(x, self.kernel)
        once = tf.cast(tf.reduce_all(tf.math.is_finite(x)), tf.int32)  # 1, known only at run time
        return [h, tf.tile(2.0 * h, tf.stack([1, once]))]


class _DictOut(tf.__internal__.tracking.AutoTrackable):
    """`(None, 4)` -> `{"logits": (None, 3), "mask": (None, 3) int32}`: no usual output key."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(2)
        self.kernel = tf.Variable(rng.normal(size=(4, 3)).astype("float32"), name="dense/kernel")

    @tf.function
    def __call__(self, x, training=False):
        h = tf.matmul(x, self.kernel)
        return {"logits": h, "mask": tf.cast(h > 0, tf.int32)}


def _save(module, path, spec):
    # The reusable SavedModel API: `variables` and `trainable_variables` attributes.
    module.variables = module.trainable_variables = [
        v for v in vars(module).values() if isinstance(v, tf.Variable)
    ]
    for training in (True, False):
        module.__call__.get_concrete_function(spec, training=training)
    tf.saved_model.save(module, str(path))
    return str(path)


@pytest.fixture(scope="module")
def dict_in_savedmodel(tmp_path_factory):
    spec = {"left": tf.TensorSpec([None, 2], tf.float32), "right": tf.TensorSpec([None, 2], tf.float32)}
    return _save(_DictIn(), tmp_path_factory.mktemp("hub") / "dict_in", spec)


@pytest.fixture(scope="module")
def list_out_savedmodel(tmp_path_factory):
    return _save(_ListOut(), tmp_path_factory.mktemp("hub") / "list_out", tf.TensorSpec([None, 4]))


@pytest.fixture(scope="module")
def dict_out_savedmodel(tmp_path_factory):
    return _save(_DictOut(), tmp_path_factory.mktemp("hub") / "dict_out", tf.TensorSpec([None, 4]))


@pytest.fixture(params=["float32", "mixed_bfloat16"])
def policy(request):
    keras.config.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_dtype_policy("float32")


def _reloaded(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    return keras.models.load_model(path)


def test_dict_inputs_in_a_functional_model_train_save_and_reload(dict_in_savedmodel, policy, tmp_path):
    rng = np.random.default_rng(0)
    x = {"left": rng.normal(size=(8, 2)).astype("float32"), "right": rng.normal(size=(8, 2)).astype("float32")}
    layer = from_hub(dict_in_savedmodel, trainable=True)
    inputs = {"left": keras.Input((2,), name="left"), "right": keras.Input((2,), name="right")}
    features = layer(inputs)
    assert tuple(features.shape) == (None, 3)
    assert features.dtype == ("bfloat16" if policy == "mixed_bfloat16" else "float32")
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(features))
    expected = x["left"] @ layer._obj.left.numpy() + x["right"] @ layer._obj.right.numpy()
    tol = 0.05 if policy == "mixed_bfloat16" else 1e-5
    np.testing.assert_allclose(np.asarray(layer(x), "float32"), expected, atol=tol, rtol=tol)
    before = layer._obj.left.numpy().copy()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, np.ones((8, 1), "float32"), epochs=1, batch_size=8, verbose=0)
    assert not np.array_equal(before, layer._obj.left.numpy())  # the SavedModel's variable trained
    reloaded = _reloaded(model, tmp_path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_list_outputs_with_unknown_shapes_keep_their_structure(list_out_savedmodel, policy, tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    layer = from_hub(list_out_savedmodel)
    out = layer(x)
    assert isinstance(out, list) and len(out) == 2
    compute = "bfloat16" if policy == "mixed_bfloat16" else "float32"
    assert [o.dtype.name for o in out] == [compute, compute]
    np.testing.assert_allclose(np.asarray(out[1], "float32"), 2 * np.asarray(out[0], "float32"), rtol=1e-2)
    assert layer.compute_output_shape((5, 4)) == [(5, 3), (5, None)]
    inputs = keras.Input((4,))
    first, second = layer(inputs)
    assert tuple(first.shape) == (None, 3) and tuple(second.shape) == (None, None)
    model = keras.Model(inputs, keras.layers.Dense(2, dtype="float32")(first))
    reloaded = _reloaded(model, tmp_path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_dict_outputs_without_a_usual_key_come_back_whole(dict_out_savedmodel, policy, tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    out = from_hub(dict_out_savedmodel)(x)
    assert set(out) == {"logits", "mask"}
    assert out["mask"].dtype == tf.int32  # integers pass as they are
    assert out["logits"].dtype.name == ("bfloat16" if policy == "mixed_bfloat16" else "float32")
    assert from_hub(dict_out_savedmodel).compute_output_shape((6, 4)) == {"logits": (6, 3), "mask": (6, 3)}
    inputs = keras.Input((4,))
    logits = from_hub(dict_out_savedmodel, output_key="logits")(inputs)
    assert tuple(logits.shape) == (None, 3)
    model = keras.Model(inputs, keras.layers.Dense(2, dtype="float32")(logits))
    reloaded = _reloaded(model, tmp_path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_build_model_asks_for_output_key_when_the_backbone_returns_a_dict(dict_out_savedmodel):
    with pytest.raises(ValueError, match=r"returns a dict of outputs \(\['logits', 'mask'\]\).*output_key="):
        backbone = from_hub(dict_out_savedmodel, input_info=InputInfo(kind="features"))
        tlkit.build_model(backbone, num_classes=2, input_shape=(4,))


def test_compute_output_shape_keeps_the_batch_size_of_string_inputs(text_savedmodel):
    layer = from_hub(text_savedmodel, input_info=InputInfo(kind="text", dtype="string"))
    assert layer.compute_output_shape((3,)) == (3, 8)
    assert layer.compute_output_shape((None,)) == (None, 8)
    assert tuple(layer(tf.constant(["a b", "c", "d e f"])).shape) == (3, 8)


def _trainable(backbone):
    return {n for n, v in zip(backbone.variable_names, backbone._hub_variables) if v.trainable}


@pytest.mark.parametrize(
    "patterns,expected",
    [
        # The affine parameters of the scope the patterns unfreeze, none of the frozen scope's.
        (["block_2/.*"], {"block_2/conv/kernel", "block_2/bn/gamma", "block_2/bn/beta"}),
        (["block_2/conv/.*"], {"block_2/conv/kernel", "block_2/bn/gamma", "block_2/bn/beta"}),
        (["top/.*"], {"top/proj/kernel"}),
    ],
)
def test_train_affine_adds_only_the_affine_parameters_of_trainable_scopes(
    image_savedmodel, patterns, expected
):
    backbone = from_hub(image_savedmodel, trainable_patterns=patterns, bn_policy="train_affine")
    assert _trainable(backbone) == expected
    assert _trainable(keras.layers.deserialize(keras.layers.serialize(backbone))) == expected


@pytest.mark.parametrize("bn_policy", ["frozen", "train_affine", "update"])
def test_unfreezing_a_group_never_trains_the_batchnorm_of_frozen_groups(image_savedmodel, bn_policy):
    model = tlkit.build_model(from_hub(image_savedmodel), num_classes=3, input_shape=(16, 16, 3))
    # Groups block_1, block_2, top, head: the top two backbone groups unfreeze.
    tlkit.trainability.unfreeze_top(model, 2, bn_policy=bn_policy)
    trainable = _trainable(tlkit.trainability.find_backbone(model))
    assert not {n for n in trainable if n.startswith("block_1/")}
    assert ("block_2/bn/gamma" in trainable) == (bn_policy != "frozen")
    assert "block_2/conv/kernel" in trainable


@pytest.mark.parametrize("bn_policy,affine", [("frozen", False), ("train_affine", True), ("update", True)])
def test_keras_backbone_batchnorm_of_frozen_groups_never_trains(bn_policy, affine):
    model = tlkit.build_model(
        tlkit.backbones.from_keras(tlkit.testing.tiny_cnn(), input_info=InputInfo(value_range=(-1, 1))),
        num_classes=3,
        input_shape=(16, 16, 3),
    )
    tlkit.trainability.unfreeze_top(model, 1, bn_policy=bn_policy)
    names = {v.path for v in model.trainable_weights}
    assert not {n for n in names if n.startswith(("block1", "block2"))}
    assert ("block3_bn/gamma" in names) == affine and "block3_conv/kernel" in names


def _packages():
    for info in pkgutil.walk_packages(tlkit.__path__, "tlkit."):
        if info.ispkg:
            yield info.name


@pytest.mark.parametrize("name", ["tlkit", *_packages()])
def test_every_package_lists_its_public_names_in_dir(name):
    module = importlib.import_module(name)
    public = set(getattr(module, "__all__", ()))
    assert public <= set(dir(module)), sorted(public - set(dir(module)))


class _TwoInputSignature(tf.__internal__.tracking.AutoTrackable):
    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(np.ones((2, 3), "float32"), name="dense/kernel")
        self.variables = self.trainable_variables = [self.kernel]

    @tf.function(input_signature=[tf.TensorSpec([None, 2]), tf.TensorSpec([None, 2])])
    def two(self, left, right):
        return {"out": tf.matmul(left + 2.0 * right, self.kernel)}


def test_a_signature_takes_a_dict_of_its_keyword_inputs(tmp_path, policy):
    module = _TwoInputSignature()
    tf.saved_model.save(module, str(tmp_path / "sig"), signatures={"two": module.two})
    layer = from_hub(str(tmp_path / "sig"), signature="two", output_key="out")
    x = {"left": np.ones((4, 2), "float32"), "right": np.ones((4, 2), "float32")}
    np.testing.assert_allclose(np.asarray(layer(x), "float32"), np.full((4, 3), 6.0))
    assert layer.compute_output_shape({"left": (4, 2), "right": (4, 2)}) == (4, 3)
    inputs = {"left": keras.Input((2,), name="left"), "right": keras.Input((2,), name="right")}
    assert tuple(layer(inputs).shape) == (None, 3)
