"""Regularization for small and imbalanced data (#19): MixUp / CutMix on training batches,
RandAugment in the augmentation config, class weights and focal loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit import config as config_lib
from tlkit.recipes import Recipe, RecipeError
from tlkit.testing import tiny_model
from tlkit.training.class_weights import balanced_class_weight, resolve_class_weight
from tlkit.training.fine_tuning import _mixed_pipelines
from tlkit.training.focal_loss import SparseCategoricalFocalCrossentropy
from tlkit.training.label_mixing import mix_batches, one_hot_labels
from tlkit.training.training_loss import training_loss


def _constant_images(values, size=16):
    """One image per value, every pixel equal to it: a mixed image's pixels tell the weights."""
    return np.stack([np.full((size, size, 3), v, "float32") for v in values])


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize("setting", [{"mixup": 0.4}, {"cutmix": 1.0}])
def test_mixed_labels_are_the_convex_combination_of_the_mixed_images(setting):
    values = np.array([10.0, 60.0, 130.0, 250.0], "float32")
    x = _constant_images(values)
    y = np.arange(4)
    ds = one_hot_labels(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), 4)
    mixed = 0
    for _ in range(5):  # five epochs: new permutations and weights each time
        for images, labels in mix_batches(ds, **setting, seed=3):
            images, labels = images.numpy(), labels.numpy()
            assert (labels >= 0).all() and np.allclose(labels.sum(axis=1), 1.0)
            assert ((labels > 1e-6).sum(axis=1) <= 2).all()
            # Each image is the labels' weights applied to the source images.
            np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), labels @ values, rtol=0.02)
            mixed += int(((labels > 1e-3) & (labels < 1 - 1e-3)).any(axis=1).sum())
    assert mixed > 0


def test_validation_is_never_mixed_and_only_its_labels_are_encoded():
    x = _constant_images([10.0, 60.0, 130.0, 250.0])
    y = np.array([0, 1, 2, 0])
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    config = tlkit.FineTuneConfig(mixup=0.4, cutmix=1.0)
    objective = training_loss("sparse_categorical_crossentropy", config, owned=True)
    assert objective.one_hot
    fit_train, fit_val = _mixed_pipelines(train, val, config, objective, 3, 4, True)
    images, labels = next(iter(fit_val))
    np.testing.assert_array_equal(images.numpy(), x)
    np.testing.assert_array_equal(labels.numpy(), np.eye(3)[y])
    mixed = [lab.numpy() for _ in range(4) for _, lab in fit_train]
    assert any(((m > 1e-3) & (m < 1 - 1e-3)).any() for m in mixed)


def test_mixup_switches_tlkit_loss_to_categorical_with_label_smoothing():
    config = tlkit.FineTuneConfig(mixup=0.2, label_smoothing=0.1)
    objective = training_loss("sparse_categorical_crossentropy", config, owned=True)
    assert isinstance(objective.loss, keras.losses.CategoricalCrossentropy)
    assert objective.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    # After fit the model evaluates integer labels with the same (smoothed) loss.
    assert type(objective.after_fit).__name__ == "SparseLabelSmoothingCrossentropy"
    focal = training_loss("sparse_categorical_crossentropy",
                          config.replace(loss_type="focal"), owned=True)
    assert isinstance(focal.loss, keras.losses.CategoricalFocalCrossentropy)
    assert isinstance(focal.after_fit, SparseCategoricalFocalCrossentropy)


def test_mixup_with_a_sparse_loss_given_is_one_clear_error():
    x = np.zeros((8, 16, 16, 3), "float32")
    y = np.zeros(8, "int32")
    model = tiny_model(compile=False)
    with pytest.raises(config_lib.ConfigError,
                       match=r"FineTuneConfig.mixup: MixUp needs one-hot labels: .*loss="):
        tlkit.fine_tune(model, (x, y), loss="sparse_categorical_crossentropy", mixup=0.2,
                        verbose=0)
    with pytest.raises(config_lib.ConfigError, match=r"cutmix: CutMix needs one-hot labels"):
        tlkit.fine_tune(model, (x, y), loss=keras.losses.SparseCategoricalCrossentropy(),
                        cutmix=1.0, verbose=0)
    with pytest.raises(RecipeError, match=r"regularization.mixup: expected a float > 0"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "regularization": {"mixup": 0}})
    with pytest.raises(ValueError, match="set regularization.mixup in a recipe"):
        tlkit.data.augmentation({"mixup": 0.2})


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_fine_tune_with_mixup_trains_and_evaluates_integer_labels_afterwards():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (24, 16, 16, 3)).astype("float32")
    y = (np.arange(24) % 3).astype("int32")
    model = tiny_model(compile=False)
    result = tlkit.fine_tune(model, (x, y), (x, y), head_epochs=1, fine_epochs=1, mixup=0.4,
                             cutmix=1.0, label_smoothing=0.1, batch_size=8, verbose=0)
    # The default strategy (auto: LP-FT here) trains with the mixed one-hot batches too.
    assert result.strategy["requested"] == "auto"
    assert len(result.history.history["val_accuracy"]) == len(result.history.epoch) >= 1
    # Compiled back for integer labels: evaluate on the sparse data works as before.
    scores = model.evaluate(x, y, verbose=0, return_dict=True)
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert type(model.loss).__name__ == "SparseLabelSmoothingCrossentropy"


def test_randaugment_from_the_augmentation_config_trains_only():
    aug = tlkit.data.augmentation({"flip": True, "randaugment": {"num_ops": 2, "factor": 0.5}},
                                  seed=1)
    layer = aug.get_layer("randaugment")
    assert isinstance(layer, keras.layers.RandAugment)
    assert layer.num_ops == 2 and tuple(layer.value_range) == (0, 255)
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(aug(x, training=False)), x)
    assert not np.allclose(keras.ops.convert_to_numpy(aug(x, training=True)), x)
    assert isinstance(tlkit.data.augmentation({"randaugment": True}).layers[0],
                      keras.layers.RandAugment)
    with pytest.raises(ValueError, match=r"randaugment` factor in \(0, 1\]"):
        tlkit.data.augmentation({"randaugment": 2.0})


def test_balanced_class_weights_are_inverse_frequencies():
    weights = balanced_class_weight([0, 0, 0, 1], 3)
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0, 2: 1.0})
    assert resolve_class_weight({1: 3.0}, 3) == {0: 1.0, 1: 3.0, 2: 1.0}
    with pytest.raises(config_lib.ConfigError, match=r"class_weight: class indices \[5\]"):
        resolve_class_weight({5: 2.0}, 3)
    with pytest.raises(config_lib.ConfigError, match="class_weight: expected 'balanced'"):
        tlkit.FineTuneConfig(class_weight="inverse")
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"},
                               "regularization": {"class_weight": "balanced", "loss": "focal"}})
    config = recipe.fine_tune_config()
    assert (config.class_weight, config.loss_type) == ("balanced", "focal")


def _imbalanced():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (40, 16, 16, 3)).astype("float32")
    y = np.where(np.arange(40) < 36, 0, 1).astype("int32")  # 36 vs 4
    return x, y


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_class_weight_balanced_shifts_predictions_to_the_rare_class():
    x, y = _imbalanced()
    probs = {}
    for weight in (None, "balanced"):
        model = tiny_model(num_classes=2, compile=False)
        tlkit.fine_tune(model, (x, y), head_epochs=3, fine_epochs=0, head_lr=3e-2,
                        class_weight=weight, batch_size=8, shuffle=False, verbose=0)
        probs[weight] = float(model.predict(x, verbose=0)[:, 1].mean())
    assert probs["balanced"] > probs[None] + 0.05


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_focal_loss_in_fine_tune_and_its_sparse_form():
    x, y = _imbalanced()
    model = tiny_model(num_classes=2, compile=False)
    tlkit.fine_tune(model, (x, y), head_epochs=1, fine_epochs=0, loss_type="focal",
                    focal_gamma=1.0, verbose=0)
    assert isinstance(model.loss, SparseCategoricalFocalCrossentropy)
    assert model.loss.gamma == 1.0
    probs = np.array([[0.7, 0.3], [0.2, 0.8]], "float32")
    labels = np.array([0, 0])
    sparse = SparseCategoricalFocalCrossentropy(gamma=1.0)(labels, probs)
    dense = keras.losses.CategoricalFocalCrossentropy(gamma=1.0)(np.eye(2)[labels], probs)
    np.testing.assert_allclose(float(sparse), float(dense), rtol=1e-6)
    with pytest.raises(config_lib.ConfigError, match="loss_type: 'focal' replaces"):
        tlkit.fine_tune(model, (x, y), loss="sparse_categorical_crossentropy",
                        loss_type="focal", verbose=0)


def test_audit_suggests_class_weights_or_focal_loss_when_imbalanced():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (20, 6, 6, 3)).astype("uint8")
    balanced = tlkit.data.audit({"train": (x[:8], np.arange(8) % 2)}, class_names=["a", "b"])
    assert balanced.imbalance_suggestion is None
    assert "class imbalance" not in balanced.to_text()
    skewed = tlkit.data.audit({"train": (x, [0] * 16 + [1] * 4)}, class_names=["a", "b"])
    line = ("class imbalance: train ratio 4.0 (>= 3); consider regularization.class_weight: "
            "balanced or regularization.loss: focal in the recipe")
    assert skewed.imbalance_suggestion.startswith(line)
    assert line in skewed.to_text()
    # The keys it names are recipe keys.
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "regularization": {
        "class_weight": "balanced", "loss": "focal"}})
    assert recipe.fine_tune_config().loss_type == "focal"


def test_regularization_settings_reach_the_tuner():
    import keras_tuner

    from tlkit.runner.tune import recipe_fixed_values
    from tlkit.tuning.hypermodel import FineTuneHyperModel

    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "regularization": {
        "loss": "focal", "focal_gamma": 1.0, "cutmix": 0.5}})
    fixed = recipe_fixed_values(recipe)
    hypermodel = FineTuneHyperModel("tiny", space={"regularization.mixup": {"values": [0.2, 0.4]}},
                                    fixed=fixed)
    hp = keras_tuner.HyperParameters()
    config = hypermodel.config(hypermodel.values(hp), head_epochs=1, total_epochs=3)
    assert config.mixup in (0.2, 0.4)
    assert (config.loss_type, config.focal_gamma, config.cutmix) == ("focal", 1.0, 0.5)
    with pytest.raises(ValueError, match="mixup"):
        FineTuneHyperModel("tiny", space={"mixup": {"min": -1.0, "max": 0.4}})


def test_integer_multi_hot_labels_are_mixed_as_fractions():
    x = _constant_images([0.0, 100.0, 200.0, 250.0])
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], "int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    labels = np.concatenate([lab.numpy() for _ in range(5)
                             for _, lab in mix_batches(ds, mixup=0.4, seed=0)])
    assert labels.dtype == np.float32
    assert ((labels > 1e-3) & (labels < 1 - 1e-3)).any()
