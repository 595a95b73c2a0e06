"""Head training on cached features equals training through the frozen backbone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit.head_training import feature_model, train_head_on_features
from tlkit.testing import tiny_cnn


def _model(augment=False):
    keras.utils.set_random_seed(0)
    aug = (
        keras.Sequential([keras.layers.RandomFlip("horizontal")], name="augmentation")
        if augment
        else None
    )
    return tlkit.build_model(
        tlkit.backbones.from_keras(tiny_cnn()),
        num_classes=3,
        input_shape=(16, 16, 3),
        dropout=0.0,
        augmentation=aug,
    )


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_cached_head_training_matches_uncached(image_batch, tmp_path):
    x, y = image_batch
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    cached = _model()
    backbone_before = [v.numpy().copy() for v in tlkit.trainability.find_backbone(cached).weights]
    history = train_head_on_features(
        cached, ds, ds, epochs=3, batch_size=8, shuffle=False, cache_dir=tmp_path, verbose=0
    )
    assert set(history.history) >= {"loss", "val_loss", "accuracy"}
    assert any(p.suffix == ".npy" for p in tmp_path.rglob("*"))  # features cached on disk

    plain = _model()
    plain.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    plain.fit(ds.batch(8), epochs=3, verbose=0)
    for a, b in zip(tlkit.heads.find_head(cached).weights, tlkit.heads.find_head(plain).weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    for a, b in zip(backbone_before, tlkit.trainability.find_backbone(cached).weights):
        np.testing.assert_array_equal(a, b.numpy())
    # The full model predicts with the head trained on features.
    np.testing.assert_allclose(cached.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-4)


def test_refuses_augmentation_and_unfrozen_backbone(image_batch):
    x, y = image_batch
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match="without augmentation"):
        train_head_on_features(_model(augment=True), ds, epochs=1, verbose=0)
    model = _model()
    tlkit.unfreeze_top(model, 1)
    with pytest.raises(ValueError, match="frozen backbone"):
        train_head_on_features(model, ds, epochs=1, verbose=0)
    assert feature_model(model).output_shape == (None, 8)


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_streamed_shards_train_the_same_head_as_in_memory_features(image_batch, tmp_path):
    x, y = image_batch
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    heads = []
    for name, limit in (("memory", 2**31), ("stream", 0)):
        model = _model()
        train_head_on_features(
            model, ds, ds, epochs=2, batch_size=8, shuffle=False, cache_dir=tmp_path / name,
            verbose=0, in_memory_max_bytes=limit, shard_size=5,
        )
        heads.append([w.numpy() for w in tlkit.heads.find_head(model).weights])
    assert len(list((tmp_path / "stream" / "train").glob("shard-*.x.npy"))) == 4  # 16 / 5
    for a, b in zip(*heads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
