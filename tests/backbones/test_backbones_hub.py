"""The TF-Hub backbone is a real Keras 3 layer: trains, freezes, saves and reloads."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit.backbones import HubBackbone, HubHandleError, InputInfo, from_hub
from tlkit.testing import TestCase, check_save_reload_parity


def _snapshot(layer):
    return {v.name: v.numpy().copy() for v in layer.weights}


def test_hub_backbone_goes_into_sequential_and_trains(image_savedmodel, image_batch):
    backbone = from_hub(image_savedmodel, trainable=True)
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), backbone, keras.layers.Dense(3, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    before = _snapshot(backbone)
    x, y = image_batch
    model.fit(x / 255.0, y, epochs=1, batch_size=8, verbose=0)
    after = _snapshot(backbone)
    for name, value in before.items():
        if "_bn_" in name:
            # BN statistics and gamma/beta stay put under the default BN policy ("frozen"),
            # as for Keras backbones.
            np.testing.assert_array_equal(value, after[name], err_msg=name)
        else:
            assert not np.array_equal(value, after[name]), f"{name} did not train"


class TestHubBackbone(TestCase):
    """The checks every backbone owes (`tlkit.testing.TestCase.run_backbone_test`)."""

    def test_image_backbone(self, image_savedmodel, image_batch, tmp_path):
        # Frozen in `build_model`, the SavedModel's variables stay bit-identical while the head
        # trains; the model saves and reloads in safe mode with the same predictions.
        x, _ = image_batch
        self.run_backbone_test(
            from_hub(image_savedmodel), x, (16, 16), expected_kind="image",
            expected_groups=["block_1", "block_2", "top"],
            build_kwargs={"num_classes": 3, "input_shape": (16, 16, 3)},
            train_data=image_batch, saving_folder=tmp_path,
        )

    def test_text_backbone(self, text_savedmodel):
        # Training and save/reload of a text model: test_text_encoder_with_string_inputs_...
        texts = tf.constant(["a good movie", "bad plot", "great acting", "awful"])
        backbone = from_hub(text_savedmodel, input_info=InputInfo(kind="text", dtype="string"))
        self.run_backbone_test(backbone, texts, (4, 8), expected_kind="text",
                               expected_groups=["embeddings", "encoder"])


@pytest.mark.parametrize(
    "bn_policy,expected",
    [
        ("frozen", {"block_2/conv/kernel"}),  # BN gamma/beta stay fixed, as in Keras backbones
        ("update", {"block_2/conv/kernel", "block_2/bn/gamma", "block_2/bn/beta"}),
        # Only the affine parameters of the scope the patterns unfreeze (#28).
        ("train_affine", {"block_2/conv/kernel", "block_2/bn/gamma", "block_2/bn/beta"}),
    ],
)
def test_trainable_patterns_train_only_matching_variables(
    image_savedmodel, image_batch, bn_policy, expected
):
    backbone = from_hub(image_savedmodel, trainable_patterns=["block_2/.*"], bn_policy=bn_policy)
    names = dict(zip(backbone.variable_names, backbone._hub_variables))
    trainable = {n for n, v in names.items() if v.trainable}
    assert trainable == expected
    model = keras.Sequential([keras.Input((16, 16, 3)), backbone, keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {n: v.numpy().copy() for n, v in names.items()}
    x, y = image_batch
    model.fit(x / 255.0, y, epochs=1, verbose=0)
    for n, v in names.items():
        if "moving" in n and bn_policy == "update":
            continue  # "update" runs the SavedModel with training=True: its statistics move
        changed = not np.array_equal(before[n], v.numpy())
        assert changed == (n in trainable), n


def test_training_flag_passed_to_savedmodel(image_savedmodel, image_batch):
    x, _ = image_batch
    frozen_bn = from_hub(image_savedmodel, trainable=True)  # default bn_policy="frozen"
    updating = from_hub(image_savedmodel, trainable=True, bn_policy="update")
    a = frozen_bn(x / 255.0, training=True).numpy()
    b = frozen_bn(x / 255.0, training=False).numpy()
    np.testing.assert_allclose(a, b)  # inference mode while BN statistics are frozen
    c = updating(x / 255.0, training=True).numpy()  # batch statistics → different output
    assert not np.allclose(c, b)
    mean = next(
        v
        for n, v in zip(updating.variable_names, updating._hub_variables)
        if n == "block_1/bn/moving_mean"
    )
    assert np.abs(mean.numpy()).sum() > 0  # the SavedModel updated its statistics


def test_regularization_losses_are_added(image_savedmodel, image_batch):
    x, _ = image_batch
    backbone = from_hub(image_savedmodel, trainable=True)
    backbone(x / 255.0)
    assert len(backbone.losses) == 1 and float(backbone.losses[0]) > 0
    frozen = from_hub(image_savedmodel, trainable=False)
    frozen(x / 255.0)
    assert frozen.losses == []


def test_save_and_reload_gives_same_outputs(image_savedmodel, image_batch, tmp_path):
    model = tlkit.build_model(image_savedmodel, num_classes=3, input_shape=(16, 16, 3))
    tlkit.unfreeze_all(model)
    x, y = image_batch
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # safe_mode=True (default)
    assert [v.trainable for v in tlkit.trainability.find_backbone(reloaded).weights] == [
        v.trainable for v in tlkit.trainability.find_backbone(model).weights
    ]
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)
    backbone = tlkit.trainability.find_backbone(reloaded)
    assert isinstance(backbone, HubBackbone) and backbone.handle == image_savedmodel


def test_text_encoder_with_string_inputs_and_dict_outputs(text_savedmodel, tmp_path):
    backbone = from_hub(
        text_savedmodel, trainable=True, input_info=InputInfo(kind="text", dtype="string")
    )
    model = tlkit.build_model(backbone, num_classes=2, freeze_backbone=False)
    texts = tf.constant(["a good movie", "bad plot", "great acting", "awful"])
    labels = np.array([1, 0, 1, 0])
    table_before = backbone.weights[0].numpy().copy()
    model.fit(tf.data.Dataset.from_tensor_slices((texts, labels)).batch(2), epochs=2, verbose=0)
    assert not np.array_equal(table_before, backbone.weights[0].numpy())
    check_save_reload_parity(model, texts, tmp_path, "text.keras")
    seq = from_hub(text_savedmodel, output_key="sequence_output")
    assert len(seq(texts).shape) == 3
    with pytest.raises(ValueError, match="not an output"):
        from_hub(text_savedmodel, output_key="nope")(texts)


def test_missing_folder_and_unreachable_handle_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="SavedModel folder not found"):
        from_hub(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a SavedModel folder"):
        from_hub(str(tmp_path / "empty"))
    with pytest.raises(HubHandleError, match="offline"):
        from_hub("https://tfhub.invalid/google/imagenet/mobilenet_v2_100_224/feature_vector/5")


def test_hub_group_rules_regroup_name_scopes(image_savedmodel):
    # The default name-scope groups are checked in TestHubBackbone.
    custom = from_hub(image_savedmodel, group_rules=[(r"block_\d", "convs"), (r"top", "top")])
    assert [g.name for g in custom.layer_groups()] == ["convs", "top"]


def test_compute_output_shape_lets_time_distributed_wrap_hub_layers(
    image_savedmodel, text_savedmodel
):
    image = from_hub(image_savedmodel)
    assert image.compute_output_shape((None, 16, 16, 3)) == (None, 16)
    frames = np.random.default_rng(0).uniform(0, 1, (2, 3, 16, 16, 3)).astype("float32")
    wrapped = keras.layers.TimeDistributed(image)
    out = wrapped(frames)
    assert tuple(out.shape) == (2, 3, 16)
    np.testing.assert_allclose(out[:, 1], image(frames[:, 1]), atol=1e-5)
    inputs = keras.Input((3, 16, 16, 3))
    assert tuple(keras.layers.TimeDistributed(from_hub(image_savedmodel))(inputs).shape) == (
        None, 3, 16,
    )
    info = InputInfo(kind="text", dtype="string")
    pooled = from_hub(text_savedmodel, input_info=info)
    sequence = from_hub(text_savedmodel, input_info=info, output_key="sequence_output")
    assert pooled.compute_output_shape((None,)) == (None, 8)
    assert sequence.compute_output_shape((None,)) == (None, None, 8)


def test_two_hub_layers_in_one_model_get_unique_names(image_savedmodel, tmp_path):
    inputs = keras.Input((16, 16, 3))
    towers = [from_hub(image_savedmodel), from_hub(image_savedmodel)]
    assert towers[0].name != towers[1].name
    merged = keras.layers.Concatenate()([t(inputs) for t in towers])
    model = keras.Model(inputs, keras.layers.Dense(2)(merged))
    x = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    check_save_reload_parity(model, x, tmp_path, "two.keras")


def test_bn_patterns_override_the_name_rule(image_savedmodel):
    # A SavedModel whose BN scope the default rule misses: name it with `bn_patterns`.
    backbone = from_hub(image_savedmodel, trainable=True, bn_patterns=[r"block_1/bn/(gamma|beta)"])
    trainable = {n for n, v in zip(backbone.variable_names, backbone._hub_variables) if v.trainable}
    assert "block_1/bn/gamma" not in trainable and "block_2/bn/gamma" in trainable
    assert backbone.get_config()["bn_patterns"] == [r"block_1/bn/(gamma|beta)"]
