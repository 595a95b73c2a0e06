"""preprocess_for (resize / channel fixes from InputInfo) and augmentation(config)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tlkit import data as tld
from tlkit.backbones import InputInfo
from tlkit.testing import check_serialization_round_trip


def test_preprocess_for_resizes_and_fixes_channels_without_rescaling():
    prep = tld.preprocess_for(InputInfo(image_size=(12, 10), channels=3, value_range=(-1, 1)))
    grey = np.full((2, 28, 28, 1), 200.0, "float32")
    out = keras.ops.convert_to_numpy(prep(grey))
    assert out.shape == (2, 12, 10, 3)
    np.testing.assert_allclose(out, 200.0, atol=1e-3)  # values stay in [0, 255]
    # Works per example inside tf.data, and image_size overrides InputInfo's.
    ds = tf.data.Dataset.from_tensor_slices((grey, np.zeros(2, "int64")))
    small = tld.preprocess_for(InputInfo(image_size=(12, 10)), image_size=(6, 6))
    x, _ = next(iter(ds.map(lambda x, y: (small(x), y))))
    assert x.shape == (6, 6, 3)


def test_preprocess_for_other_cases():
    to_grey = tld.preprocess_for(InputInfo(channels=1))
    rgb = np.stack([np.full((4, 4), v, "float32") for v in (255.0, 0.0, 0.0)], -1)[None]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(to_grey(rgb)), 255 * 0.2989, rtol=1e-4)
    rgba = np.concatenate([rgb, np.full((1, 4, 4, 1), 9.0, "float32")], -1)
    out = keras.ops.convert_to_numpy(tld.preprocess_for(InputInfo())(rgba))
    np.testing.assert_allclose(out, rgb)
    assert isinstance(
        tld.preprocess_for(InputInfo(kind="text", dtype="string")), keras.layers.Identity
    )
    # The channel layer saves and reloads.
    layer = tld.ChannelAdapter(3)
    assert check_serialization_round_trip(layer).channels == 3
    with pytest.raises(ValueError, match="channels"):
        tld.ChannelAdapter(2)


def test_augmentation_builds_seeded_layers():
    aug = tld.augmentation(
        {
            "flip": "horizontal",
            "rotation": 0.1,
            "zoom": 0.1,
            "translation": (0.1, 0.2),
            "contrast": 0.2,
        },
        seed=3,
    )
    assert [type(layer).__name__ for layer in aug.layers] == [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
        "RandomContrast",
    ]
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(aug(x, training=False)), x)
    one = keras.ops.convert_to_numpy(tld.augmentation({"rotation": 0.2}, seed=5)(x, training=True))
    two = keras.ops.convert_to_numpy(tld.augmentation({"rotation": 0.2}, seed=5)(x, training=True))
    np.testing.assert_allclose(one, two)
    assert not np.allclose(one, x)
    assert isinstance(tld.augmentation({}), keras.layers.Identity)


def test_augmentation_errors():
    with pytest.raises(
        ValueError,
        match=r"Unknown augmentation key\(s\) \['blur'\]. Allowed keys: "
        r"\['flip', 'rotation', 'zoom', 'translation', 'contrast', 'randaugment'\]",
    ):
        tld.augmentation({"blur": 1.0, "flip": True})
    with pytest.raises(ValueError, match="flip"):
        tld.augmentation({"flip": "diagonal"})


def test_image_preprocessing_uses_the_one_channel_adapter():
    from tlkit.preprocessing import ChannelAdapter, ImagePreprocessing

    grey = np.arange(2 * 4 * 4, dtype="float32").reshape(2, 4, 4, 1)
    layer = ImagePreprocessing(InputInfo(channels=3))
    assert isinstance(layer._channels, ChannelAdapter)
    out = np.asarray(layer(grey))
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    rgba = np.concatenate([np.repeat(grey, 3, axis=-1), np.full_like(grey, 255.0)], axis=-1)
    np.testing.assert_array_equal(np.asarray(layer(rgba)), out)  # alpha dropped
