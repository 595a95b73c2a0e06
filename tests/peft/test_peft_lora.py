"""LoRA adapters: which weights train, fine_tune compatibility, bad input."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import tlkit
from tlkit.optimizers.layerwise import variable_lr_multipliers
from tlkit.peft import InvalidRankError, LoraConfig, PeftError, TargetsNotFoundError
from tlkit.testing import tiny_model, tiny_transformer


def _data(model, n=12, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(model.input_shape[1:])
    return rng.uniform(0, 255, shape).astype("float32"), np.arange(n) % 3


def test_default_targets_of_a_transformer_are_every_linear_layer():
    model = tiny_transformer()
    report = tlkit.peft.lora(model, rank=2)
    names = {p.rsplit("/", 1)[-1] for p in report.layers}
    assert names == {"query", "key", "value", "attention_output", "transformer_layer_0_ffn",
                     "transformer_layer_1_ffn"} and len(report.layers) == 10
    trainable = [v.path for v in model.trainable_weights]
    assert all(p.endswith(("lora_kernel_a", "lora_kernel_b")) or p.startswith("head") for p in trainable)
    assert report.trainable_params == sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    # The defaults are resolved into the recorded config (what adapter files store).
    assert report.config.targets == ("Dense", "EinsumDense") and report.config.alpha == 4


def test_default_rank_is_4_and_alpha_twice_the_rank():
    assert LoraConfig().rank == 4 and LoraConfig().scale == 2.0
    assert LoraConfig(rank=8).resolved_alpha == 16 and LoraConfig(rank=8, alpha=8).scale == 1.0
    model = tiny_transformer()
    tlkit.peft.lora(model)
    layers = tlkit.peft.lora_layers(model)
    assert {(layer.lora_rank, layer.lora_alpha) for layer in layers} == {(4, 8)}
    # The merged kernel is base + (alpha / rank) * A @ B = base + 2 * A @ B.
    ffn = next(layer for layer in layers if isinstance(layer, keras.layers.Dense))
    ffn.lora_kernel_b.assign(np.full(ffn.lora_kernel_b.shape, 0.05, "float32"))
    update = ffn.lora_kernel_a.numpy() @ ffn.lora_kernel_b.numpy()
    np.testing.assert_allclose(ffn.kernel.numpy() - ffn._kernel.numpy(), 2 * update, atol=1e-6)


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_lora_leaves_outputs_unchanged_then_only_adapters_and_head_train():
    model = tiny_model()
    x, y = _data(model)
    before = model.predict(x, verbose=0)
    base = {v.path: v.numpy().copy() for v in model.weights}
    tlkit.peft.lora(model, rank=2, targets=["Conv2D"])
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-6)  # B starts at 0
    # strategy="gradual": the subject is the head phase, then adapters unfreezing by group.
    result = tlkit.fine_tune(model, (x, y), strategy="gradual", epochs=(1, 2), lr=1e-2,
                             verbose=0, early_stopping_patience=None)
    for v in model.weights:
        if v.path in base and "head" not in v.path:
            np.testing.assert_array_equal(v.numpy(), base[v.path], err_msg=v.path)  # base frozen
    changed = [v.path for v in model.weights if "lora_kernel_b" in v.path and np.any(v.numpy())]
    assert len(changed) == 3
    # Head phase first, then the adapters unfreeze group by group (top first).
    events = result.unfreeze_events
    assert events[0]["trainable_groups"] == ["head"]
    assert events[1]["trainable_groups"] == ["block2", "block3", "head"]
    assert events[-1]["trainable_params"] == sum(
        int(np.prod(v.shape)) for v in model.weights if "lora" in v.path or "head" in v.path
    )


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_layerwise_lr_and_groups_cover_adapters():
    model = tiny_model()
    tlkit.peft.lora(model, rank=2, targets=["block3", "block1_conv"])
    multipliers = variable_lr_multipliers(model, decay=2.0)
    assert multipliers["block3_conv/lora_kernel_a"] == 0.5
    assert multipliers["block1_conv/lora_kernel_b"] == 0.125
    assert not any("block2_conv/lora" in p for p in multipliers)
    x, y = _data(model)
    tlkit.fine_tune(model, (x, y), epochs=(0, 1), unfreeze="all", layerwise_decay=2.0, verbose=0)


def test_train_norms_keeps_layer_norms_trainable():
    model = tiny_transformer()
    tlkit.peft.lora(model, rank=2, train_norms=True)
    trainable = {v.path for v in model.trainable_weights}
    assert {"transformer_layer_0_norm/gamma", "transformer_layer_0_norm/beta"} <= trainable
    assert "transformer_layer_0_ffn/kernel" not in trainable


def test_config_round_trips_and_validates():
    config = LoraConfig(rank=4, alpha=8, targets=["query"], train_norms=True)
    assert LoraConfig.from_config(config.get_config()) == config
    assert config.scale == 2.0
    with pytest.raises(InvalidRankError, match="rank=0"):
        LoraConfig(rank=0)
    with pytest.raises(PeftError, match="Unknown LoRA setting"):
        LoraConfig.from_config({"rank": 4, "rnak": 2})
    with pytest.raises(PeftError, match="quantize"):
        LoraConfig(quantize="int3")


def test_bad_targets_and_ranks_name_what_exists():
    with pytest.raises(TargetsNotFoundError, match=r"\['nope'\].*block1.*Conv2D.*block2_conv"):
        tlkit.peft.lora(tiny_model(), rank=2, targets=["nope"])
    with pytest.raises(TargetsNotFoundError, match="pointwise_conv"):
        tlkit.peft.lora(tiny_model(), rank=2)  # no 1x1 convs in the tiny CNN
    with pytest.raises(InvalidRankError, match=r"block1_conv \(at most 4\)"):
        tlkit.peft.lora(tiny_model(), rank=5, targets=["Conv2D"])
    model = tiny_model()
    tlkit.peft.lora(model, rank=2, targets=["Conv2D"])
    with pytest.raises(PeftError, match="already has LoRA"):
        tlkit.peft.lora(model, rank=2, targets=["Conv2D"])


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_lora_under_mixed_precision_keeps_float32_adapters_and_trains(mixed_bfloat16):
    model = tiny_transformer()
    tlkit.peft.lora(model, rank=2)
    adapters = [v for v in model.weights if "lora" in v.path]
    assert adapters and all(v.dtype == "float32" for v in adapters)
    assert tlkit.peft.lora_layers(model)[0].compute_dtype == "bfloat16"
    x, y = _data(model, n=8)
    history = tlkit.fine_tune(model, (x, y), epochs=(0, 1), unfreeze="all", lr=1e-2, verbose=0,
                              batch_size=4).history.history
    assert np.isfinite(history["loss"]).all()
    assert any(np.any(v.numpy()) for v in adapters if "lora_kernel_b" in v.path)


@pytest.mark.slow
def test_lora_under_mirrored_strategy_trains_like_one_device():
    out = subprocess.run(
        [sys.executable, "-m", "tlkit.testing.mirrored_check", "--lora"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["trained_adapters"] == 3
    assert result["max_weight_diff"] < 1e-4, result


def test_default_targets_of_a_cnn_are_its_pointwise_convolutions():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="block1_conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="block1_dwconv")(x)
    x = keras.layers.Conv2D(6, 1, name="block1_project")(x)
    x = keras.layers.Conv2D(6, 1, name="block2_expand")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = tlkit.backbones.from_keras(keras.Model(inputs, x))
    model = tlkit.build_model(backbone, num_classes=3, input_shape=(8, 8, 3))
    report = tlkit.peft.lora(model, rank=2)
    assert report.layers == ["block1_project", "block2_expand"]


def test_lora_logs_the_learning_rate_adapters_want(caplog):
    assert tlkit.peft.LORA_LR == 3e-3  # from benchmarks/results/peft_sweep.json
    with caplog.at_level("INFO", logger="tlkit.peft"):
        tlkit.peft.lora(tiny_transformer(), rank=2)
    assert "higher learning rate than full fine-tuning, e.g. lr=0.003" in caplog.text
