"""KerasHub backbones from a local preset folder: groups, raw-string models, save/reload."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit

keras_hub = pytest.importorskip("keras_hub")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "a", "plot"]


@pytest.fixture(scope="module")
def bert_preset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("preset"))
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8).save_to_preset(path)
    keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8,
    ).save_to_preset(path)
    return path


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_keras_hub_text_backbone_trains_on_raw_strings(bert_preset, tmp_path):
    backbone = tlkit.backbones.get(f"keras_hub:{bert_preset}")
    assert backbone.input_info.kind == "text" and backbone.preprocessor is not None
    model = tlkit.build_model(backbone, num_classes=2)
    names = tlkit.trainability.group_names(model)
    assert names[:3] == ["embeddings", "transformer_layer_0", "transformer_layer_1"]
    assert names[-1] == "head"
    tlkit.unfreeze_top(model, 1)
    texts = tf.constant(["good movie", "bad plot", "the good plot", "a bad movie"])
    labels = np.array([1, 0, 1, 0])
    layer0 = [v.numpy().copy() for g in tlkit.layer_groups(model) if g.name == "transformer_layer_0"
              for v in g.variables]
    model.fit(tf.data.Dataset.from_tensor_slices((texts, labels)).batch(2), epochs=1, verbose=0)
    after = [v.numpy() for g in tlkit.layer_groups(model) if g.name == "transformer_layer_0"
             for v in g.variables]
    assert all(np.array_equal(a, b) for a, b in zip(layer0, after))  # frozen group untouched
    model.save(tmp_path / "bert.keras")
    reloaded = keras.models.load_model(tmp_path / "bert.keras")
    np.testing.assert_allclose(reloaded.predict(texts, verbose=0), model.predict(texts, verbose=0),
                               atol=1e-6)


def test_missing_preset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="preset folder not found"):
        tlkit.backbones.from_keras_hub(str(tmp_path / "nope"))


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_keras_hub_backbone_under_mixed_bfloat16(bert_preset, mixed_bfloat16):
    model = tlkit.build_model(tlkit.backbones.get(f"keras_hub:{bert_preset}"), num_classes=2)
    assert model.output.dtype == "float32"
    assert tlkit.trainability.find_backbone(model).compute_dtype == "bfloat16"
    tlkit.unfreeze_top(model, 1)
    texts = tf.constant(["good movie", "bad plot", "the good plot", "a bad movie"])
    history = model.fit(tf.data.Dataset.from_tensor_slices((texts, np.array([1, 0, 1, 0]))).batch(4),
                        epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(texts, verbose=0).dtype == np.float32
