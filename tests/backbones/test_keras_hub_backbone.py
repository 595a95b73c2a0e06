"""KerasHub backbones from a local preset folder: groups, raw-string models, save/reload."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit.testing import TestCase

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


class TestKerasHubBackbone(TestCase):
    @pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
    def test_text_backbone_trains_on_raw_strings(self, bert_preset, tmp_path):
        # The checks every backbone owes (`tlkit.testing.TestCase.run_backbone_test`): a text
        # backbone whose preprocessor makes the model take raw strings; its head trains while
        # every backbone group stays bit-identical; the model saves and reloads in safe mode
        # with the same predictions on the strings.
        backbone = tlkit.backbones.get(f"keras_hub:{bert_preset}")
        assert backbone.preprocessor is not None
        texts = tf.constant(["good movie", "bad plot", "the good plot", "a bad movie"])
        labels = np.array([1, 0, 1, 0])
        model = self.run_backbone_test(
            backbone, texts, (4, 8), expected_kind="text",
            expected_groups=["embeddings", "transformer_layer_0", "transformer_layer_1", "top"],
            expected_num_params=1456, build_kwargs={"num_classes": 2},
            train_data=(texts, labels), saving_folder=tmp_path)
        assert tlkit.trainability.group_names(model)[-1] == "head"
        # With the top group unfrozen, it trains and the groups below it stay put.
        tlkit.unfreeze_top(model, 1)
        model.compile(optimizer="adam", loss=model.loss)  # a new optimizer for the new variables
        before = {g.name: [v.numpy().copy() for v in g.variables]
                  for g in tlkit.layer_groups(model)}
        model.fit(tf.data.Dataset.from_tensor_slices((texts, labels)).batch(2), epochs=1,
                  verbose=0)
        moved = {g.name for g in tlkit.layer_groups(model)
                 if any(not np.array_equal(a, v.numpy()) for a, v in zip(before[g.name],
                                                                          g.variables))}
        assert moved == {"top", "head"}, moved


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
