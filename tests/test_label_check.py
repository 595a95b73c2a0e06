"""Labels outside the model's classes, NaN inputs and empty data: one clear error (#30 item 11),
before TensorFlow's `InvalidArgumentError` graph dump or scikit-learn's NaN message."""

import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit.label_check import LabelError, check_labels
from tlkit.testing import tiny_image_data, tiny_model


@pytest.fixture(scope="module")
def data():
    return tiny_image_data(24)


@pytest.mark.parametrize("bad", [7, -1])
@pytest.mark.parametrize("strategy", ["gradual", "auto"])
def test_arrays_with_out_of_range_labels_are_refused_before_training(data, bad, strategy):
    x, y = data
    labels = np.where(np.arange(len(y)) == 5, bad, y)
    model = tiny_model(num_classes=3)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(LabelError, match=rf"label {bad} at index 5 is outside the model's 3 "
                       r"classes \(expected 0..2; 1 such label"):
        tlkit.fine_tune(model, (x, labels), None, head_epochs=1, fine_epochs=1,
                        strategy=strategy, verbose=0, batch_size=8)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_dataset_with_an_out_of_range_label_is_one_line(data):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, np.where(np.arange(len(y)) == 5, 7, y))).batch(8)
    with pytest.raises(LabelError, match=r"label 7 is outside the model's 3 classes") as info:
        tlkit.fine_tune(tiny_model(num_classes=3), ds, None, head_epochs=1, fine_epochs=1,
                        strategy="gradual", verbose=0)
    assert "\n" not in str(info.value)


def test_nan_pixels_are_named_before_the_probe(data):
    x, y = data
    x = x.copy()
    x[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"features of 1 training example\(s\) \(the first: "
                       r"index 3\) contain NaN or infinity"):
        tlkit.fine_tune(tiny_model(num_classes=3), (x, y), None, head_epochs=1, fine_epochs=1,
                        strategy="lp_ft", verbose=0, batch_size=8)


def test_predict_refuses_nothing_and_nan(data):
    x, _ = data
    model = tiny_model(num_classes=3)
    with pytest.raises(ValueError, match=r"predict: no inputs given"):
        tlkit.predict(model, [], ["a", "b", "c"])
    x = x[:4].copy()
    x[2, 1, 1, 1] = np.inf
    with pytest.raises(ValueError, match=r"predict: input array\[2\]: NaN or infinite values"):
        tlkit.predict(model, x, ["a", "b", "c"])


def test_check_labels():
    check_labels(np.array([0, 1, 2]), 3)
    check_labels(np.eye(3), 3)  # one-hot: not class indices, left alone
    with pytest.raises(LabelError, match=r"no examples"):
        check_labels(np.array([]), 3)
    with pytest.raises(LabelError, match=r"label nan at index 1 is not a class index"):
        check_labels(np.array([0.0, np.nan]), 3)
