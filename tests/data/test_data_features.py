"""extract_features (in memory and .npy cache) and the few-shot PrototypeClassifier."""

import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tlkit import data as tld
from tlkit.testing import check_serialization_round_trip


def _feature_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x), name="tiny_features")


def _images(n=13, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 8, 8, 3)).astype("float32")
    y = (np.arange(n) % 3).astype("int64")
    return x, y


def test_extract_features_matches_direct_calls():
    model = _feature_model()
    x, y = _images()
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    feats = tld.extract_features(model, ds, batch_size=4, progress=False)
    got_x, got_y = map(np.stack, zip(*feats.as_numpy_iterator()))
    np.testing.assert_allclose(got_x, keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got_y, y)
    # A plain callable and an already batched dataset work too.
    arr, labels = tld.extract_feature_arrays(
        lambda b: tf.reduce_mean(b, axis=[1, 2]), ds.batch(5), batched=True, progress=False
    )
    np.testing.assert_allclose(arr, x.mean(axis=(1, 2)), rtol=1e-5)
    assert labels.tolist() == y.tolist()


def test_extract_features_disk_cache(tmp_path, caplog, capsys):
    model = _feature_model()
    x, y = _images()
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    first, _ = tld.extract_feature_arrays(
        model, ds, batch_size=4, cache_dir=tmp_path, cache_name="train", progress=True
    )
    assert "4/4" in capsys.readouterr().out  # keras Progbar, not print
    files = sorted(os.listdir(tmp_path))
    assert files == ["train.features.npy", "train.json", "train.labels.npy"]  # no tmp leftovers
    np.testing.assert_allclose(np.load(tmp_path / "train.features.npy"), first)

    calls = []

    def counting(batch):
        calls.append(1)
        return model(batch)

    # A plain callable has no weights fingerprint: the cache is reused when the count matches.
    again, _ = tld.extract_feature_arrays(
        counting, ds, batch_size=4, cache_dir=tmp_path, cache_name="train", progress=False
    )
    assert calls == [] and np.allclose(again, first)

    # Changed weights or a different number of examples: recomputed, with a warning.
    model.layers[-1].kernel.assign(model.layers[-1].kernel * 2.0)
    with caplog.at_level(logging.WARNING, logger="tlkit.data"):
        changed, _ = tld.extract_feature_arrays(
            model, ds, batch_size=4, cache_dir=tmp_path, cache_name="train", progress=False
        )
    assert "weights differ" in caplog.text and not np.allclose(changed, first)
    fewer, _ = tld.extract_feature_arrays(
        model, ds.take(5), cache_dir=tmp_path, cache_name="train", progress=False
    )
    assert len(fewer) == 5


def test_extract_features_errors(tmp_path):
    x, y = _images(4)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(TypeError, match="dict with keys"):
        tld.extract_features(lambda b: {"pooled": b}, ds, progress=False)
    with pytest.raises(ValueError, match="plain file name"):
        tld.extract_features(
            _feature_model(), ds, cache_dir=tmp_path, cache_name="../x", progress=False
        )
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        tld.extract_features(
            _feature_model(), tf.data.Dataset.from_tensor_slices(x), progress=False
        )


def test_prototype_classifier_few_shot():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16)) * 3
    support_y = np.repeat(np.arange(3), 5)
    support = centers[support_y] + rng.normal(size=(15, 16)) * 0.3
    query_y = np.repeat(np.arange(3), 20)
    query = centers[query_y] + rng.normal(size=(60, 16)) * 0.3
    clf = tld.PrototypeClassifier().fit(support, support_y)
    assert clf.evaluate(query, query_y)["accuracy"] == 1.0
    probs = clf.predict_proba(query)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs.argmax(axis=1) == clf.predict(query)).all()
    # Prototypes are unit vectors; the config round-trips.
    np.testing.assert_allclose(np.linalg.norm(clf.prototypes, axis=1), 1.0, rtol=1e-5)
    again = check_serialization_round_trip(clf)
    np.testing.assert_allclose(again.predict_proba(query), probs, rtol=1e-5)


def test_prototype_classifier_with_feature_model_and_dataset():
    model = _feature_model()
    x, y = _images(12)
    clf = tld.PrototypeClassifier(feature_model=model, batch_size=5)
    clf.fit(tf.data.Dataset.from_tensor_slices((x, y)), None)
    direct = keras.ops.convert_to_numpy(model(x))
    expected = direct / np.linalg.norm(direct, axis=1, keepdims=True)
    np.testing.assert_allclose(clf.embed(x), expected, rtol=1e-4, atol=1e-5)
    assert clf.evaluate(tf.data.Dataset.from_tensor_slices((x, y)).batch(4))["num_examples"] == 12
    with pytest.raises(ValueError, match=r"No examples for class\(es\) \[2\]"):
        tld.PrototypeClassifier().fit(np.ones((2, 3)), [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="not fitted"):
        tld.PrototypeClassifier().predict(np.ones((2, 3)))
