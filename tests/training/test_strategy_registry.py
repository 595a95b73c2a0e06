"""The fine-tuning strategy objects (#31): one registered object per strategy, a typed record."""

import types

import pytest

import tlkit
from tlkit import config as config_lib
from tlkit.training import strategies
from tlkit.training.strategies import base, registry

LINEAR = types.SimpleNamespace(kind="classification", hidden_units=())


def test_every_configured_strategy_is_a_registered_object_named_like_its_key():
    assert registry.NAMES == config_lib.FINE_TUNE_STRATEGIES
    for name in registry.NAMES:
        strategy = strategies.get(name)
        assert isinstance(strategy, base.Strategy)
        assert strategy.name == name
    assert {n for n in registry.NAMES if strategies.get(n).uses_probe} == {
        "lp_ft", "linear_probe", "auto", "self_training"}


def test_unknown_name_is_one_config_error_naming_the_choices():
    with pytest.raises(config_lib.ConfigError, match=r"strategy: expected one of \['gradual'"):
        strategies.get("fixmatch")


@pytest.mark.parametrize("name", ["gradual", "full", "lp_ft", "linear_probe", "surgical"])
def test_named_strategies_plan_themselves(name):
    group = {"surgical_group": 0} if name == "surgical" else {}
    assert strategies.planned(tlkit.FineTuneConfig(strategy=name, **group), LINEAR) == name


def test_auto_plans_lp_ft_unless_the_config_or_head_rules_the_probe_out():
    assert strategies.planned(tlkit.FineTuneConfig(), LINEAR) == "lp_ft"
    assert strategies.planned(tlkit.FineTuneConfig(unfreeze="all"), LINEAR) == "gradual"
    regression = types.SimpleNamespace(kind="regression", hidden_units=())
    assert strategies.planned(tlkit.FineTuneConfig(), regression) == "gradual"
    assert strategies.planned(tlkit.FineTuneConfig(), None) == "gradual"  # no tlkit head


def _labels(name, **settings):
    config = tlkit.FineTuneConfig(strategy=name, head_epochs=1, fine_epochs=2, **settings)
    return [(s["short"], s["start"], s["end"], s["unfrozen"])
            for s in strategies.segments(config, 3)]


def test_each_strategy_describes_what_trains_when():
    assert _labels("full") == [("head", 0, 1, 0), ("all", 1, 3, 3)]
    assert _labels("gradual", unfreeze="table", table={0: 1, 1: "all"}) == [
        ("head", 0, 1, 0), ("top 1", 1, 2, 1), ("all", 2, 3, 3)]
    assert _labels("lp_ft") == [("probe", 0, 0, 0), ("all", 0, 2, 3)]
    assert _labels("linear_probe") == [("probe", 0, 0, 0)]
    assert _labels("surgical", surgical_group=1) == [("head", 0, 1, 0), ("group 1", 1, 3, 1)]
    assert _labels("auto") == _labels("lp_ft")


def test_the_record_says_when_auto_kept_the_probe():
    choice = base.StrategyChoice(name="linear_probe", requested="auto", reason="r")
    assert "probe_kept" not in choice.to_record()
    choice.probe_kept = True
    record = choice.to_record()
    assert record["probe_kept"] is True
    config = tlkit.FineTuneConfig(fine_epochs=2)
    shorts = [s["short"] for s in strategies.segments(config, 3, record=record)]
    assert shorts == ["probe", "all"]
    assert [s["short"] for s in strategies.segments(
        config, 3, record={**record, "probe_kept": False})] == ["probe"]


def test_the_package_face_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from tlkit.training import strategies; strategies.NAMES; "
            "import tlkit.config; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
