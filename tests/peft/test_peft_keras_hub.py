"""LoRA adapters saved in KerasHub's `*.lora.h5` format and read back by KerasHub itself."""

import keras
import numpy as np
import pytest

import tlkit
from tlkit.peft import PeftError
from tlkit.peft.keras_hub_lora import _keras_hub_backbone
from tlkit.testing import tiny_model

keras_hub = pytest.importorskip("keras_hub")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "a", "plot"]
TOKENS = {"token_ids": np.array([[2, 5, 7, 3, 0, 0], [2, 6, 10, 8, 3, 0]]),
          "padding_mask": np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]]),
          "segment_ids": np.zeros((2, 6), "int32")}


@pytest.fixture(scope="module")
def bert_preset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("preset"))
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=6).save_to_preset(path)
    keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=6,
    ).save_to_preset(path)
    return path


def _trained_lora(preset, targets):
    """A tlkit model on the preset with LoRA (rank 2, tlkit's alpha 4: scale 2) whose
    adapters hold random values, as after fine-tuning."""
    model = tlkit.build_model(tlkit.backbones.get(f"keras_hub:{preset}"), num_classes=2)
    tlkit.peft.lora(model, rank=2, targets=targets)
    rng = np.random.default_rng(0)
    for layer in tlkit.peft.lora_layers(model):
        for v in (layer.lora_kernel_a, layer.lora_kernel_b):
            v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
    return model


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize("targets,defaults,num_layers", [
    (["query", "value"], True, 4),  # KerasHub's default layers: a bare load_lora_weights
    (None, False, 13),  # tlkit's default, every Dense / EinsumDense (6 a layer + pooler)
])
def test_keras_hub_loads_the_adapters_and_computes_what_tlkit_did(bert_preset, tmp_path, targets,
                                                                  defaults, num_layers):
    model = _trained_lora(bert_preset, targets)
    record = tlkit.peft.save_keras_hub_lora(model, tmp_path / "bert.lora.h5")
    assert (record["rank"], record["num_layers"]) == (2, num_layers)
    assert record["loads_with_defaults"] is defaults
    expected = _keras_hub_backbone(model)(TOKENS)["sequence_output"]

    fresh = keras_hub.models.Backbone.from_preset(bert_preset)  # a KerasHub user's backbone
    assert np.abs(fresh(TOKENS)["sequence_output"] - expected).max() > 1e-2  # LoRA matters
    if not defaults:
        fresh.enable_lora(2, target_layer_names=record["target_layer_names"])
    fresh.load_lora_weights(record["path"])  # KerasHub's own reader
    np.testing.assert_allclose(fresh(TOKENS)["sequence_output"], expected, atol=1e-5)


def test_what_the_format_cannot_hold_is_refused(bert_preset, tmp_path):
    model = _trained_lora(bert_preset, ["transformer_layer_1"])  # one layer's query, not all
    with pytest.raises(PeftError, match="leaves out some layers named .*'query'"):
        tlkit.peft.save_keras_hub_lora(model, tmp_path / "a.lora.h5")
    with pytest.raises(PeftError, match="must end in '.lora.h5'"):
        tlkit.peft.save_keras_hub_lora(model, tmp_path / "a.h5")
    other = tiny_model()
    tlkit.peft.lora(other, rank=2, targets=["Conv2D"])
    with pytest.raises(PeftError, match="for KerasHub backbones"):
        tlkit.peft.save_keras_hub_lora(other, tmp_path / "b.lora.h5")
    assert not list(tmp_path.iterdir())  # nothing written
