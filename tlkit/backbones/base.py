"""The `Backbone` layer: a pretrained feature extractor that knows its input and its groups."""

from __future__ import annotations

import keras

from tlkit import groups as groups_lib
from tlkit.backbones.input_info import InputInfo


class Backbone(keras.layers.Layer):
    """Base class of tlkit backbones.

    A backbone maps preprocessed inputs to features (a feature map, a sequence or a vector) and
    carries what the model around it needs: `input_info` (image size, value range, dtype) and its
    layer groups from input to output.

    Args:
        input_info: an `InputInfo` (or its config dict).
        group_rules: optional ordered `(regex, group name)` rules over leaf layer names (Keras
            backbones) or variable names (SavedModel backbones). Default: tlkit's rules for
            common architectures, else equal chunks.
    """

    def __init__(self, input_info=None, group_rules=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(input_info, dict) or input_info is None:
            input_info = InputInfo.from_config(input_info)
        self.input_info = input_info
        self.group_rules = [tuple(r) for r in group_rules] if group_rules else None

    def layer_groups(self) -> list[groups_lib.LayerGroup]:
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_info": self.input_info.get_config(),
                "group_rules": [list(r) for r in self.group_rules] if self.group_rules else None,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tlkit")
class KerasBackbone(Backbone):
    """A Keras model (functional, `keras.applications`, KerasHub) used as a backbone.

    Example:
    ```python
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    backbone = KerasBackbone(base, input_info=InputInfo(image_size=(96, 96), value_range=(-1, 1)))
    ```
    """

    def __init__(self, model, input_info=None, group_rules=None, output_key=None, **kwargs):
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        kwargs.setdefault("name", "backbone")
        super().__init__(input_info=input_info, group_rules=group_rules, **kwargs)
        self.model = model
        self.output_key = output_key

    def build(self, input_shape):
        if not self.model.built:
            self.model.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        outputs = self.model(inputs, training=training)
        if isinstance(outputs, dict):
            key = self.output_key or next(
                (k for k in ("pooled_output", "default", "sequence_output") if k in outputs), None
            )
            if key not in outputs:
                raise ValueError(
                    f"The backbone returns a dict; pass `output_key=` with one of {sorted(outputs)}."
                )
            outputs = outputs[key]
        return outputs

    def layer_groups(self):
        rules = self.group_rules or groups_lib.DEFAULT_GROUP_RULES
        return groups_lib.group_layers_by_rules(groups_lib.leaf_layers(self.model), rules)

    def get_config(self):
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        config["output_key"] = self.output_key
        return config
