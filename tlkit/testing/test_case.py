"""`TestCase`: the shared base of tlkit's backbone and strategy tests, in the style of KerasHub's
`keras_hub/src/tests/test_case.py` (`run_backbone_test`, `run_serialization_test`, ...).

A test class derives from it and names the property it checks; the base runs the checks every
backbone (or strategy) owes, built on `tlkit.testing.checks`. It is a plain class, not a
`unittest.TestCase`, so pytest fixtures (`tmp_path`, `image_savedmodel`, `monkeypatch`) and
parametrization work on its methods as on test functions.

Example:

```python
from tlkit.testing import TestCase


class TestHubBackbone(TestCase):
    def test_image_backbone(self, image_savedmodel, image_batch, tmp_path):
        backbone = tlkit.backbones.from_hub(image_savedmodel)
        self.run_backbone_test(backbone, image_batch[0], (16, 16),
                               expected_groups=["block_1", "block_2", "top"],
                               build_kwargs={"num_classes": 3, "input_shape": (16, 16, 3)},
                               train_data=image_batch, saving_folder=tmp_path)
```
"""

from __future__ import annotations

from tlkit.testing.checks import (
    check_save_reload_parity,
    check_serialization_round_trip,
    frozen_weights_unchanged,
)


class TestCase:
    """Base class of the backbone and strategy tests: `run_*` methods, each a set of checks.

    Subclasses are collected by pytest as usual (`class TestX(TestCase)`); the base itself is not.
    """

    __test__ = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    # -- serialization ----------------------------------------------------------------------------
    def run_serialization_test(self, instance, cls=None):
        """`from_config(get_config())` keeps the config, and so does a Keras
        `serialize_keras_object` / `deserialize_keras_object` round trip through JSON (for
        registered Keras objects: layers, schedules, optimizers). Returns the revived object."""
        import json

        import keras

        revived = check_serialization_round_trip(instance, cls)
        if _is_keras_serializable(instance):
            serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(instance)))
            again = keras.saving.deserialize_keras_object(serialized)
            assert type(again) is type(instance), (type(again), type(instance))
            check_serialization_round_trip(again)
            assert _plain(again.get_config()) == _plain(instance.get_config())
        return revived

    # -- backbones --------------------------------------------------------------------------------
    def run_backbone_test(
        self,
        backbone,
        input_data,
        expected_output_shape,
        *,
        expected_groups=None,
        expected_num_params=None,
        expected_kind=None,
        run_serialization_check=True,
        build_kwargs=None,
        train_data=None,
        saving_folder=None,
    ):
        """The checks every tlkit backbone owes; returns the built model (or `None`).

        - it is a `tlkit.backbones.Backbone` whose `input_info.kind` is `expected_kind`;
        - `layer_groups()` are named `expected_groups` (input to output) and hold
          `expected_num_params` parameters together;
        - its config round-trips (`run_serialization_test`), unless `run_serialization_check`
          is False (a backbone whose config holds a whole model is slow to rebuild);
        - called eagerly on `input_data`, the output has `expected_output_shape` (a backbone
          with a `preprocessor`, a KerasHub text preset, is called on
          `backbone.preprocessor(input_data)`: `input_data` is what the built model takes);
        - with `train_data` (`(x, y)`), `tlkit.build_model(backbone, **build_kwargs)` (backbone
          frozen, the default) trains its head for one epoch while every backbone group stays
          bit-identical (`frozen_weights_unchanged`);
        - with `saving_folder`, the built model saves as `.keras`, reloads in safe mode and
          predicts the same on `input_data` (`check_save_reload_parity`).

        Args:
            backbone: the `Backbone` layer under test.
            input_data: a batch the built model takes (images or strings).
            expected_output_shape: the shape of `backbone(input_data)`.
            expected_groups: group names, input to output (default: not checked).
            expected_num_params: the parameters of all groups together (default: not checked).
            expected_kind: `"image"` or `"text"` (default: not checked).
            run_serialization_check: the config round trip (default True).
            build_kwargs: keyword arguments of `tlkit.build_model` (default `num_classes=2`).
            train_data: `(x, y)` for the frozen-backbone training check (default: skipped).
            saving_folder: a folder for the save/reload check (default: skipped).
        """
        import numpy as np

        import tlkit
        from tlkit.backbones import Backbone

        assert isinstance(backbone, Backbone), f"{type(backbone).__name__} is not a Backbone"
        if expected_kind is not None:
            assert backbone.input_info.kind == expected_kind, backbone.input_info
        groups = backbone.layer_groups()
        if expected_groups is not None:
            assert [g.name for g in groups] == list(expected_groups)
        if expected_num_params is not None:
            assert sum(g.num_params for g in groups) == expected_num_params
        if run_serialization_check:
            self.run_serialization_test(backbone)
        preprocessor = getattr(backbone, "preprocessor", None)
        output = backbone(input_data if preprocessor is None else preprocessor(input_data))
        assert tuple(output.shape) == tuple(expected_output_shape), (
            f"backbone output {tuple(output.shape)}, expected {tuple(expected_output_shape)}")
        if train_data is None and saving_folder is None:
            return None
        model = tlkit.build_model(backbone, **(build_kwargs or {"num_classes": 2}))
        if train_data is not None:
            x, y = train_data
            head = tlkit.heads.find_head(model)
            head_before = [np.array(w.numpy(), copy=True) for w in head.weights]
            backbone_groups = [g.name for g in tlkit.layer_groups(model) if g.name != "head"]
            with frozen_weights_unchanged(model, backbone_groups):
                model.fit(x, y, epochs=1, batch_size=len(y), verbose=0)
            assert any(not np.array_equal(old, w.numpy())
                       for old, w in zip(head_before, head.weights)), "the head did not train"
        if saving_folder is not None:
            check_save_reload_parity(model, input_data, saving_folder,
                                     name=f"{backbone.name}.keras")
        return model

    # -- fine-tuning strategies -------------------------------------------------------------------
    def run_strategy_test(
        self,
        model,
        train,
        validation=None,
        *,
        strategy=None,
        expected_strategy=None,
        expected_requested=None,
        expected_trained=None,
        expected_unfrozen=None,
        **settings,
    ):
        """Runs `tlkit.fine_tune(model, train, validation, strategy=strategy, **settings)` and
        checks the record of what ran against what changed; returns `(result, changed)`.

        - `result.strategy` names the strategy that ran (`expected_strategy`, default
          `strategy`) and the one requested (`expected_requested`, default `strategy`); `auto`
          records why it chose;
        - `changed`, the set of layer groups (`tlkit.layer_groups` names, `"head"` included)
          whose weights moved, is `expected_trained`: every other group is bit-identical;
        - the per-epoch count of unfrozen backbone groups (`history["unfrozen_groups"]`) is
          `expected_unfrozen`.

        Args:
            model: a model from `tlkit.build_model` (`compile=False` is fine).
            train, validation: what `fine_tune` takes (a dataset, `(x, y)`, `LabeledData`).
            strategy: the `strategy=` setting (default: the config's, `auto`).
            expected_strategy: the strategy the record names (default `strategy`).
            expected_requested: the requested one it names (default `strategy`, else `"auto"`).
            expected_trained: the groups that must change (default: not checked).
            expected_unfrozen: `history["unfrozen_groups"]` (default: not checked).
            **settings: other `fine_tune` settings (`head_epochs=1`, `lr=1e-2`, ...).
        """
        import numpy as np

        import tlkit

        if strategy is not None:
            settings["strategy"] = strategy
        settings.setdefault("verbose", 0)
        groups = {g.name: g for g in tlkit.layer_groups(model)}
        before = {name: [np.array(v.numpy(), copy=True) for v in g.variables]
                  for name, g in groups.items()}
        result = tlkit.fine_tune(model, train, validation, **settings)
        changed = {name for name, g in groups.items()
                   if any(not np.array_equal(old, v.numpy())
                          for old, v in zip(before[name], g.variables, strict=True))}
        record = result.strategy
        requested = expected_requested or strategy or "auto"
        ran = expected_strategy or strategy
        assert record["requested"] == requested, record
        if ran is not None:
            assert record["strategy"] == ran, record
        if requested == "auto":
            assert record.get("reason"), f"auto recorded no reason for its choice: {record}"
        if expected_trained is not None:
            assert changed == set(expected_trained), (
                f"groups changed {sorted(changed)}, expected {sorted(expected_trained)}")
        if expected_unfrozen is not None:
            assert result.history.history["unfrozen_groups"] == list(expected_unfrozen)
        return result, changed


def _is_keras_serializable(instance) -> bool:
    import keras

    name = keras.saving.get_registered_name(type(instance))
    return keras.saving.get_registered_object(name) is type(instance)


def _plain(value):
    import json

    return json.loads(json.dumps(value, default=repr, sort_keys=True))
