"""`TemperatureScaling`: a serializable layer that applies a fitted temperature to a model's
softmax output, so `model.keras`, `predict` and the exports (SavedModel, TFLite) all serve the
calibrated probabilities. The temperature is fitted by `tlkit.reports.fit_temperature`."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tlkit")
class TemperatureScaling(keras.layers.Layer):
    """`softmax(log(p) / temperature)` of probabilities `p`: logits divided by `temperature`.

    The predicted class never changes; `temperature > 1` softens overconfident probabilities.

    Args:
        temperature: the fitted temperature, > 0.

    Example:
    ```python
    calibrated = tlkit.temperature.with_temperature(model, 1.7)
    ```
    """

    def __init__(self, temperature: float, **kwargs):
        super().__init__(**kwargs)
        if not float(temperature) > 0:
            raise ValueError(f"Expected `temperature` > 0. Received: temperature={temperature}")
        self.temperature = float(temperature)

    def call(self, probs):
        probs = keras.ops.cast(probs, "float32")
        logits = keras.ops.log(keras.ops.clip(probs, 1e-12, 1.0))
        return keras.ops.softmax(logits / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """A model with the same inputs and weights whose output goes through `TemperatureScaling`.

    Args:
        model: a functional classifier ending in a softmax (as `tlkit.build_model` makes).
        temperature: from `tlkit.reports.fit_temperature`.
    """
    outputs = TemperatureScaling(temperature, name="temperature_scaling")(model.outputs[0])
    return keras.Model(model.inputs, outputs, name=model.name)
