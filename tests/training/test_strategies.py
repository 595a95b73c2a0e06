"""Fine-tuning strategies that follow the evidence (#19): multiplicative layer decay."""

import numpy as np
import pytest

import tlkit
from tlkit import config as config_lib
from tlkit.optimizers import from_config, group_lr_multipliers
from tlkit.recipes import Recipe, RecipeError
from tlkit.testing import tiny_model


def _model():
    return tiny_model(compile=False, freeze_backbone=False)


def test_layer_decay_is_a_factor_per_group_down_from_the_head():
    model = _model()
    config = tlkit.FineTuneConfig(layer_decay=0.75)
    optimizer = from_config(config, 1e-3, model=model)
    expected = group_lr_multipliers(model, decay=1 / 0.75)
    groups = sorted(expected.values(), reverse=True)
    assert groups[0] == pytest.approx(1.0)
    assert groups[1] == pytest.approx(0.75)
    assert groups[2] == pytest.approx(0.75 ** 2)
    # The optimizer carries those multipliers (not the ULMFiT divisor's 1/2.6 per group).
    multipliers = tlkit.optimizers.variable_lr_multipliers(model, decay=1 / 0.75)
    assert type(optimizer).__name__.startswith("Layerwise")
    assert np.isclose(min(multipliers.values()), min(groups))


def test_layer_decay_and_the_ulmfit_divisor_are_alternatives():
    assert tlkit.FineTuneConfig(layerwise_decay=2.6).layer_decay is None
    with pytest.raises(config_lib.ConfigError, match="layer_decay.*not both"):
        tlkit.FineTuneConfig(layer_decay=0.75, layerwise_decay=2.6)


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2, "x"])
def test_bad_layer_decay_names_the_setting(bad):
    with pytest.raises(config_lib.ConfigError, match=r"layer_decay: expected a float in \(0, 1\]"):
        tlkit.FineTuneConfig(layer_decay=bad)


def test_layer_decay_from_a_recipe():
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "optimizer": {"layer_decay": 0.65}})
    assert recipe.fine_tune_config().layer_decay == 0.65
    with pytest.raises(RecipeError, match="layer_decay"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "optimizer": {"layer_decay": 2.6}})


def _fit(config):
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 127).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    keras.utils.set_random_seed(0)
    model = tiny_model(compile=False)
    plan = tlkit.fine_tune_plan(model, config, steps_per_epoch=2, verbose=0)
    model.compile(optimizer=plan.optimizer, loss="sparse_categorical_crossentropy")
    model.fit(train, validation_data=train, epochs=plan.epochs, callbacks=plan.callbacks,
              verbose=0)
    return model, plan


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_ema_weights_are_validated_and_kept():
    import keras

    base = dict(head_epochs=1, fine_epochs=2, lr=1e-2, lr_schedule="constant", patience=None)
    plain, _ = _fit(tlkit.FineTuneConfig(**base))
    model, plan = _fit(tlkit.FineTuneConfig(ema_momentum=0.5, **base))
    assert plan.optimizer.use_ema and plan.optimizer.ema_momentum == 0.5
    assert any(isinstance(c, keras.callbacks.SwapEMAWeights) for c in plan.callbacks)
    # The final weights are the optimizer's moving averages (Keras's finalize), not the raw ones.
    pairs = list(zip(plan.optimizer._trainable_variables,
                     plan.optimizer._model_variables_moving_average))
    assert pairs
    for variable, average in pairs:
        np.testing.assert_allclose(variable.numpy(), average.numpy())
    head = [w for w in model.trainable_weights if "head" in w.path or "dense" in w.path]
    raw = {w.path: w for w in plain.trainable_weights}
    assert any(not np.allclose(w.numpy(), raw[w.path].numpy()) for w in head)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5])
def test_bad_ema_momentum_names_the_setting(bad):
    with pytest.raises(config_lib.ConfigError, match=r"ema_momentum: expected a float in \(0, 1\)"):
        tlkit.FineTuneConfig(ema_momentum=bad)
    with pytest.raises(RecipeError, match="ema_momentum"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "optimizer": {"ema_momentum": bad}})


@pytest.mark.parametrize("layer_decay", [None, 0.75])
def test_weight_decay_skips_biases_and_normalization(layer_decay):
    import keras

    model = tiny_model(compile=False, freeze_backbone=False)
    config = tlkit.FineTuneConfig(weight_decay=0.5, layer_decay=layer_decay, optimizer="sgd")
    optimizer = from_config(config, 0.1, model=model)
    optimizer.build(model.trainable_variables)
    names = {v.name for v in model.trainable_variables}
    assert "bias" in names and ("gamma" in names or "kernel" in names)
    for variable in model.trainable_variables:
        decayed = optimizer._use_weight_decay(variable)
        assert decayed == (variable.name not in ("bias", "gamma", "beta")), variable.path
    # Behaviour: with zero gradients, only kernels shrink (biases set non-zero to show it).
    for variable in model.trainable_variables:
        if variable.name in ("bias", "gamma", "beta"):
            variable.assign(keras.ops.ones_like(variable))
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in model.trainable_variables])
    for variable, old in zip(model.trainable_variables, before):
        changed = not np.allclose(variable.numpy(), old)
        if variable.name in ("bias", "gamma", "beta"):
            assert not changed, variable.path
        elif variable.name == "kernel":
            assert changed, variable.path


def test_simpleshot_centering_removes_a_shared_offset():
    from tlkit.data import PrototypeClassifier

    rng = np.random.default_rng(0)
    # Two classes that differ only by a small direction, on top of a large shared offset: cosine
    # similarity without centering sees almost the same vector everywhere.
    offset = np.full(8, 50.0, "float32")
    direction = np.eye(8, dtype="float32")[0]
    support = np.stack([offset + direction, offset - direction])
    support = support + rng.normal(0, 0.05, support.shape).astype("float32")
    labels = np.array([0, 1])
    query = np.stack([offset + 0.5 * direction + np.eye(8)[1] * 2.0,
                      offset - 0.5 * direction + np.eye(8)[1] * 2.0]).astype("float32")
    plain = PrototypeClassifier().fit(support, labels)
    centered = PrototypeClassifier(center=True).fit(support, labels)
    np.testing.assert_allclose(centered.mean, support.mean(axis=0), rtol=1e-6)
    assert centered.predict(query).tolist() == [0, 1]
    # Without centering the margin is tiny; with it the classes are far apart.
    margin = lambda clf: np.abs(np.diff(clf.similarities(query), axis=1)).min()  # noqa: E731
    assert margin(centered) > 10 * margin(plain)
    # The mean is saved with the prototypes: a reloaded classifier scores the same.
    again = PrototypeClassifier.from_config(centered.get_config())
    np.testing.assert_allclose(again.similarities(query), centered.similarities(query), rtol=1e-6)


def test_linear_probe_writes_the_converged_solution_into_the_head():
    import tensorflow as tf

    from tlkit.head_training import feature_model, fit_linear_probe

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (48, 16, 16, 3)).astype("float32")
    y = (np.arange(48) % 3).astype("int32")
    x[y == 1, :, :, 0] = 255.0  # separable through the backbone's features
    x[y == 2, :, :, 1] = 0.0
    model = tiny_model()
    backbone_before = [w.numpy().copy() for w in tlkit.trainability.find_backbone(model).weights]
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    info = fit_linear_probe(model, train, train, Cs=(0.1, 100.0))
    assert info["C"] in (0.1, 100.0) and info["val_accuracy"] == info["train_accuracy"]
    # The Keras model now predicts what the probe predicts, and only the head changed.
    from sklearn.linear_model import LogisticRegression

    feats = np.asarray(feature_model(model).predict(x, verbose=0)).reshape(len(x), -1)
    # C applies to the features scaled to unit mean squared norm.
    mean_sq_norm = np.mean(np.sum(feats.astype("float64") ** 2, axis=1))
    np.testing.assert_allclose(info["feature_mean_sq_norm"], mean_sq_norm, rtol=1e-4)
    scaled = feats / np.sqrt(mean_sq_norm)
    probe = LogisticRegression(C=info["C"], max_iter=1000).fit(scaled, y)
    keras_pred = np.argmax(model.predict(x, verbose=0), axis=1)
    assert (keras_pred == probe.predict(scaled)).mean() == 1.0
    for before, after in zip(backbone_before, tlkit.trainability.find_backbone(model).weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_linear_probe_c_does_not_depend_on_the_feature_scale(monkeypatch):
    """The same data with features 1,000x larger: the same C, the same predictions, a kernel
    1,000x smaller (without the scaling, C=1 on the large features is far weaker)."""
    import tensorflow as tf

    from tlkit import head_training

    width = int(tlkit.heads.find_head(tiny_model(num_classes=4)).input.shape[-1])
    rng = np.random.default_rng(1)
    y = np.arange(40) % 4
    feats = rng.normal(size=(40, width)).astype("float32") + np.eye(4, width, dtype="float32")[y]
    data = tf.data.Dataset.from_tensor_slices((np.zeros((40, 16, 16, 3), "float32"), y)).batch(8)
    solutions = {}
    for factor in (1.0, 1000.0):
        monkeypatch.setattr(head_training, "_feature_arrays",
                            lambda *args, factor=factor: (feats * factor, y))
        model = tiny_model(num_classes=4)
        info = head_training.fit_linear_probe(model, data, Cs=(1.0,))
        out = tlkit.heads.find_head(model)._out
        solutions[factor] = (info, out.kernel.numpy().copy(), out.bias.numpy().copy())
    (small, k1, b1), (large, k1000, b1000) = solutions[1.0], solutions[1000.0]
    np.testing.assert_allclose(large["feature_mean_sq_norm"], small["feature_mean_sq_norm"] * 1e6,
                               rtol=1e-4)
    np.testing.assert_allclose(k1000 * 1000.0, k1, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(b1000, b1, rtol=1e-3, atol=1e-5)
    assert small["train_accuracy"] == large["train_accuracy"]


def test_linear_probe_solver_runs_on_one_blas_thread(monkeypatch):
    """The L-BFGS fits run under `PROBE_BLAS_THREADS` BLAS threads (benchmarks/probe_speed.py:
    OpenBLAS's threads made them 3-16x slower on 2 cores), and the limit is lifted after."""
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info, threadpool_limits

    from tlkit import head_training

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen, real_fit = [], LogisticRegression.fit

    def fit(self, *args, **kwargs):
        seen.append(blas_threads())
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", fit)
    x = np.random.default_rng(0).uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    train = tf.data.Dataset.from_tensor_slices((x, np.arange(12) % 3)).batch(4)
    with threadpool_limits(limits=2, user_api="blas"):  # as on a 2-core machine
        assert blas_threads() == {2}
        head_training.fit_linear_probe(tiny_model(), train, train, Cs=(0.1, 1.0))
        assert seen == [{1}, {1}]  # one fit per C
        assert blas_threads() == {2}


def test_linear_probe_without_validation_takes_the_largest_c():
    import tensorflow as tf

    from tlkit.head_training import fit_linear_probe

    x = np.random.default_rng(0).uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    train = tf.data.Dataset.from_tensor_slices((x, np.arange(12) % 3)).batch(4)
    info = fit_linear_probe(tiny_model(), train, Cs=(1.0, 0.1))
    assert (info["C"], info["C_chosen_by"]) == (1.0, "the largest C given (no validation data)")
    assert info["val_accuracy"] is None
    info = fit_linear_probe(tiny_model(), train, train, Cs=(0.1, 1.0))
    assert info["C_chosen_by"] == "validation accuracy (12 examples)"
    info = fit_linear_probe(tiny_model(), train, train, Cs=(0.3,))
    assert (info["C"], info["C_chosen_by"]) == (0.3, "the one C given")


def _probe_cs(monkeypatch):
    """Records the `Cs` each `fit_linear_probe` call of `fine_tune` receives."""
    from tlkit import head_training

    seen, real = [], head_training.fit_linear_probe

    def watched(*args, **kwargs):
        seen.append(kwargs.get("Cs"))
        return real(*args, **kwargs)

    monkeypatch.setattr(head_training, "fit_linear_probe", watched)
    return seen


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize("strategy,probe_c,expected", [
    ("lp_ft", 4.0, (4.0,)),  # the default: one strongly regularized probe starts LP-FT
    ("lp_ft", 0.5, (0.5,)),
    ("lp_ft", None, None),  # null: the probe's grid, chosen on validation
    # The probe alone chooses on validation only from linear_probe.CHOOSE_FROM examples (#36);
    # 12 are too few, so it fits at probe_c.
    ("linear_probe", 0.5, None),
])
def test_probe_c_sets_the_probe_that_starts_fine_tuning(monkeypatch, strategy, probe_c, expected):
    import tensorflow as tf

    from tlkit import head_training

    seen = _probe_cs(monkeypatch)
    x = np.random.default_rng(0).uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(12) % 3)).batch(4)
    kwargs = {} if probe_c == 4.0 else {"probe_c": probe_c}
    result = tlkit.fine_tune(tiny_model(compile=False), data, data, strategy=strategy,
                             fine_epochs=1, verbose=0, **kwargs)
    assert seen == [expected]
    chosen = result.strategy["probe"]["C"]
    if strategy == "linear_probe":
        assert chosen == probe_c and "too few" in result.strategy["probe"]["C_chosen_by"]
    else:
        assert chosen == expected[0] if expected else chosen in head_training.PROBE_CS


def test_probe_c_in_recipes_and_its_errors():
    assert tlkit.FineTuneConfig().probe_c == 4.0
    assert tlkit.FineTuneConfig().probe_temperature == 3.0
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"probe_c": 0.1}})
    assert recipe.fine_tune_config().probe_c == 0.1
    assert Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"probe_c": None}}) \
        .fine_tune_config().probe_c is None
    with pytest.raises(config_lib.ConfigError, match=r"probe_c: expected a float > 0"):
        tlkit.FineTuneConfig(probe_c=0.0)
    with pytest.raises(RecipeError, match="probe_c"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"probe_c": -1}})


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize("strategy,temperature,divided_by", [
    ("lp_ft", 4.0, 4.0),  # fine-tuning starts from the probe's logits / 4
    ("lp_ft", 1.0, 1.0),
    ("linear_probe", 4.0, 1.0),  # the probe alone keeps its own logits
])
def test_probe_temperature_softens_the_probe_that_starts_lp_ft(monkeypatch, strategy,
                                                               temperature, divided_by):
    import keras
    import tensorflow as tf

    from tlkit import head_training

    seen, real = {}, head_training.fit_linear_probe

    def watched(model, *args, **kwargs):
        info = real(model, *args, **kwargs)
        out = tlkit.heads.find_head(model)._out
        seen["probe"] = [out.kernel.numpy().copy(), out.bias.numpy().copy()]
        return info

    class Start(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            out = tlkit.heads.find_head(self.model)._out
            seen["start"] = [out.kernel.numpy().copy(), out.bias.numpy().copy()]

    monkeypatch.setattr(head_training, "fit_linear_probe", watched)
    x = np.random.default_rng(0).uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(12) % 3)).batch(4)
    model = tiny_model(compile=False)
    result = tlkit.fine_tune(model, data, data, strategy=strategy, fine_epochs=1, verbose=0,
                             probe_temperature=temperature, callbacks=[Start()])
    out = tlkit.heads.find_head(model)._out
    start = seen.get("start", [out.kernel.numpy(), out.bias.numpy()])  # linear_probe: no fit
    assert np.abs(seen["probe"][0]).max() > 0
    for probe, first in zip(seen["probe"], start):
        np.testing.assert_allclose(first, probe / divided_by, rtol=1e-6)
    if strategy == "lp_ft":
        assert result.strategy["probe"]["temperature"] == temperature


def test_probe_temperature_in_recipes_and_its_errors():
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"probe_temperature": 3}})
    assert recipe.fine_tune_config().probe_temperature == 3.0
    with pytest.raises(config_lib.ConfigError, match=r"probe_temperature: expected a float > 0"):
        tlkit.FineTuneConfig(probe_temperature=0)
    with pytest.raises(RecipeError, match="phases.probe_temperature"):
        Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"probe_temperature": -2}})


def test_linear_probe_refuses_missing_classes():
    import tensorflow as tf

    from tlkit.head_training import fit_linear_probe

    x = np.zeros((4, 16, 16, 3), "float32")
    train = tf.data.Dataset.from_tensor_slices((x, np.zeros(4, "int32"))).batch(2)
    with pytest.raises(ValueError, match=r"no training examples of class\(es\) \[1, 2\]"):
        fit_linear_probe(tiny_model(), train)


def test_wise_ft_interpolates_and_picks_alpha_on_validation():
    import tensorflow as tf

    from tlkit.training.weight_interpolation import wise_ft

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (24, 16, 16, 3)).astype("float32")
    y = (np.arange(24) % 3).astype("int32")
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = tiny_model()
    good = model.get_weights()
    # "Fine-tuned" end: the same weights with the float ones scaled, so alpha changes outputs.
    model.set_weights([w * 3.0 if np.issubdtype(w.dtype, np.floating) else w for w in good])
    info = wise_ft(model, good, val, metric="loss")
    assert set(info["scores"]) == {0.25, 0.5, 0.75, 1.0}
    best = info["alpha"]
    assert info["scores"][best] == min(info["scores"].values())
    expected = [(1 - best) * g + best * 3.0 * g for g in good]
    for w, e in zip(model.get_weights(), expected):
        np.testing.assert_allclose(w, e, rtol=1e-5, atol=1e-6)


def test_wise_ft_bad_inputs_name_the_setting():
    from tlkit.training.weight_interpolation import wise_ft

    model = tiny_model()
    with pytest.raises(ValueError, match="wise_ft: no pretrained weights"):
        wise_ft(model, None, None)
    with pytest.raises(ValueError, match=r"wise_ft: alphas must be in \[0, 1\]"):
        wise_ft(model, model.get_weights(), None, alphas=(1.5,))


def test_predict_tta_averages_the_views():
    from tlkit.inference import predict_tta

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    model = tiny_model()
    plain = model.predict(x, verbose=0)
    mirrored = model.predict(x[:, :, ::-1, :], verbose=0)
    np.testing.assert_allclose(predict_tta(model, x), (plain + mirrored) / 2, rtol=1e-5)
    np.testing.assert_allclose(predict_tta(model, x, flip=False), plain, rtol=1e-5)
    with_crops = predict_tta(model, x, crops=0.75)
    assert with_crops.shape == plain.shape
    np.testing.assert_allclose(with_crops.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="crops must be a fraction"):
        predict_tta(model, x, crops=1.5)


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_label_smoothing_reaches_the_loss():
    import keras

    from tlkit.training.fine_tuning import fine_tune
    from tlkit.training.label_smoothing import SparseLabelSmoothingCrossentropy

    model = tiny_model()
    x = np.zeros((8, 16, 16, 3), "float32")
    y = (np.arange(8) % 3).astype("int32")
    fine_tune(model, (x, y), tlkit.FineTuneConfig(head_epochs=1, fine_epochs=0,
                                                  label_smoothing=0.2), batch_size=8, verbose=0)
    loss = model.loss
    assert isinstance(loss, SparseLabelSmoothingCrossentropy) and loss.label_smoothing == 0.2
    # Equals Keras's categorical cross-entropy with smoothing on one-hot labels.
    pred = keras.ops.convert_to_tensor(np.full((3, 3), 1 / 3, "float32") + np.eye(3) * 0.1)
    pred = pred / keras.ops.sum(pred, axis=1, keepdims=True)
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)(np.eye(3), pred)
    np.testing.assert_allclose(float(loss(np.arange(3), pred)), float(expected), rtol=1e-5)
    with pytest.raises(config_lib.ConfigError, match=r"label_smoothing: expected a float in"):
        tlkit.FineTuneConfig(label_smoothing=0.9)
    with pytest.raises(ValueError, match="label_smoothing=0.2 needs a cross-entropy loss"):
        fine_tune(tiny_model(), (x, y), tlkit.FineTuneConfig(label_smoothing=0.2), loss="mse",
                  batch_size=8, verbose=0)
