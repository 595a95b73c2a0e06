"""Reusable test checks, in the style of keras-hub's `TestCase.run_serialization_test` /
`run_model_saving_test`: one implementation of each property the test suite asserts again and
again, so a test names the property instead of re-deriving it.

- `check_serialization_round_trip(obj)`: `from_config(get_config())` gives an equal config.
- `check_save_reload_parity(model, x, folder)`: `.keras` save, `tlkit.load`, same outputs.
- `frozen_weights_unchanged(model, groups)`: a context manager asserting that the weights of
  the named layer groups are bit-identical after its block (e.g. after a `fit`).
"""

from __future__ import annotations

import contextlib
import os


def check_serialization_round_trip(obj, cls=None):
    """Asserts `cls.from_config(obj.get_config())` has the same config (JSON-comparable);
    returns the new object. `cls`: default `type(obj)`."""
    cls = cls or type(obj)
    config = obj.get_config()
    again = cls.from_config(config)
    assert _plain(again.get_config()) == _plain(config), (
        f"{cls.__name__} round trip changed the config:\n{config}\n->\n{again.get_config()}")
    return again


def check_save_reload_parity(model, x, folder, name="model.keras", rtol=1e-6, atol=1e-6):
    """Saves `model` as `.keras` in `folder`, reloads it with `tlkit.load` (safe mode) and
    asserts the predictions on `x` agree; returns the reloaded model."""
    import numpy as np

    import tlkit

    path = os.path.join(os.fspath(folder), name)
    expected = model.predict(x, verbose=0)
    model.save(path)
    reloaded = tlkit.load(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=rtol, atol=atol)
    return reloaded


@contextlib.contextmanager
def frozen_weights_unchanged(model, groups):
    """Asserts on exit that every variable of the layer groups `groups` (names, as in
    `tlkit.layer_groups(model)`) is bit-identical to its value on entry."""
    import numpy as np

    from tlkit.trainability import layer_groups

    by_name = {g.name: g for g in layer_groups(model)}
    unknown = [g for g in groups if g not in by_name]
    assert not unknown, f"unknown groups {unknown}; the model has {sorted(by_name)}"
    variables = [v for g in groups for v in by_name[g].variables]
    assert variables, f"groups {list(groups)} hold no variables"
    before = [np.array(v.numpy(), copy=True) for v in variables]
    yield
    changed = [v.path for v, old in zip(variables, before, strict=True)
               if not np.array_equal(old, v.numpy())]
    assert not changed, f"frozen variables changed: {changed}"


def _plain(value):
    import json

    return json.loads(json.dumps(value, default=repr, sort_keys=True))
