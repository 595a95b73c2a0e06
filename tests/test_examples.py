"""The scripts in examples/ run top to bottom, each in its tiny-data mode (`--tiny`: synthetic
data and the random `tiny` backbones, as the README test and the smoke recipe use)."""

import importlib.util
import json
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested_here():
    scripts = sorted(f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    with open(__file__, encoding="utf-8") as f:
        source = f.read()
    assert scripts and all(f'_example("{s}")' in source for s in scripts)


def test_own_image_folder(tmp_path, capsys):
    result = _example("own_image_folder").main(["--tiny", "--out", str(tmp_path)])
    assert set(result.test_metrics) >= {"accuracy", "loss"}
    assert (tmp_path / "model.keras").exists()
    assert "saved" in capsys.readouterr().out  # and a reloaded prediction


def test_text_classification(capsys):
    result = _example("text_classification").main(["--tiny"])
    assert "accuracy" in result.test_metrics
    assert "'what a great ride': " in capsys.readouterr().out


@pytest.mark.slow  # over ~3 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_lora_int8(tmp_path):
    results = _example("lora_int8").main(["--tiny", "--out", str(tmp_path)])
    int8 = results["tflite-int8"]
    assert int8["full_integer"] is True and int8["parity"]["num_examples"] > 0
    assert int8["float_size_bytes"] > 0 and int8["size_bytes"] > 0
    assert (tmp_path / "adapters.npz").exists()
    exported = json.loads((tmp_path / "export" / "export.json").read_text())
    assert "tflite-int8" in exported


@pytest.mark.slow
def test_recipe_with_tuning(tmp_path):
    metrics = _example("recipe_with_tuning").main(["--tiny", "--out", str(tmp_path)])
    assert "accuracy" in json.dumps(metrics)
    assert list(tmp_path.glob("search/**/best_recipe.yaml"))
