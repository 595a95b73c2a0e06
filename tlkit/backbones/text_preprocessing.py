"""`TextPreprocessing`: a KerasHub text preprocessor as a layer of a functional model."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tlkit")
class TextPreprocessing(keras.layers.Layer):
    """Wraps a KerasHub text preprocessor so it can sit inside a functional model.

    A KerasHub tokenizer gets its vocabulary from the saved model's assets only after the
    functional graph has been rebuilt, so rebuilding a model that calls it on the string input
    fails ("No vocabulary has been set"). This layer declares its output spec itself, which
    lets `keras.models.load_model` rebuild the graph first and restore the vocabulary after.

    Args:
        preprocessor: a KerasHub preprocessor returning `{"token_ids", "segment_ids",
            "padding_mask"}` for a batch of strings.
        sequence_length: the preprocessor's output length.

    Example:
    ```python
    layer = tlkit.pretrained.minilm_preprocessor(32)  # a TextPreprocessing
    inputs = keras.Input(shape=(), dtype="string")
    features = layer(inputs)  # dict of (batch, 32) tensors
    ```
    """

    def __init__(self, preprocessor, sequence_length, **kwargs):
        super().__init__(**kwargs)
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        self.preprocessor = preprocessor
        self.sequence_length = int(sequence_length)
        # Let Python strings / lists through to the KerasHub layer, which converts them.
        self._allow_non_tensor_positional_args = True
        self._convert_input_args = False
        self.built = True

    def call(self, inputs):
        return self.preprocessor(inputs)

    def compute_output_spec(self, inputs):
        shape = (inputs.shape[0], self.sequence_length)
        return {
            "token_ids": keras.KerasTensor(shape, dtype="int32"),
            "segment_ids": keras.KerasTensor(shape, dtype="int32"),
            "padding_mask": keras.KerasTensor(shape, dtype="bool"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
                "sequence_length": self.sequence_length,
            }
        )
        return config
