"""LoRA on an int8 base (Keras' int8 path) and the error for layers Keras can't quantize."""

import numpy as np
import pytest

import tlkit
from tlkit.peft import UnsupportedLayersError
from tlkit.testing import tiny_model, tiny_transformer


@pytest.mark.slow
def test_lora_on_an_int8_base_trains_only_adapters_and_head():
    model = tiny_transformer()
    x = np.random.default_rng(0).uniform(0, 255, (12, 6, 8)).astype("float32")
    before = model.predict(x, verbose=0)
    report = tlkit.peft.lora(model, rank=2, quantize="int8")
    query = [layer for layer in tlkit.peft.lora_layers(model) if layer.name == "query"][0]
    assert query.quantization_mode == "int8" and str(query._kernel.dtype) == "int8"
    assert np.abs(model.predict(x, verbose=0) - before).max() < 0.1  # int8 rounding only
    int8_before = {v.path: v.numpy().copy() for v in model.weights if str(v.dtype) == "int8"}
    assert len(int8_before) >= 10  # q, k, v, output projections and the FFNs of both layers
    tlkit.fine_tune(model, (x, np.arange(12) % 3), epochs=(1, 1), lr=1e-2, unfreeze="all", verbose=0)
    assert all(("lora" in v.path) or v.path.startswith("head") for v in model.trainable_weights)
    for v in model.weights:
        if v.path in int8_before:
            np.testing.assert_array_equal(v.numpy(), int8_before[v.path])
    assert report.trainable_params == sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_quantizing_conv_targets_lists_the_unsupported_layers():
    with pytest.raises(UnsupportedLayersError, match=r"3 of the LoRA target.*block1_conv \(Conv2D\)"):
        tlkit.peft.lora(tiny_model(), rank=2, targets=["Conv2D"], quantize="int8")
