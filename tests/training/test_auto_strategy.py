"""`strategy="auto"` is the default (#19): where it cannot probe, or the user set the unfreeze
schedule, it runs `gradual` and says why; run reports name the phases of what ran."""

import json
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlkit
from tlkit import config as config_lib
from tlkit.head_training import ProbeError
from tlkit.recipes import Recipe
from tlkit.testing import TestCase, tiny_model
from tlkit.unfreeze.schedule import UnfreezeSchedule

SMOKE = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "smoke.yaml")


def _images(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32")
    y = (np.argsort(np.argsort(x.mean(axis=(1, 2, 3)))) * 3 // n).astype("int32")
    return x, y


def _fine_tune(model, train, validation=None, **settings):
    settings = {"head_epochs": 1, "fine_epochs": 1, "patience": None, "verbose": 0, **settings}
    return tlkit.fine_tune(model, train, validation, **settings)


def _gradual_with(result, caplog, *phrases):
    assert result.strategy["strategy"] == "gradual"
    assert result.strategy["requested"] == "auto"
    for phrase in phrases:
        assert phrase in result.strategy["reason"]
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("strategy gradual (from auto)")]
    assert len(lines) == 1 and result.strategy["reason"] in lines[0]
    # gradual ran: no probe, the head epochs as configured (lp_ft would run none)
    assert "probe" not in result.strategy and result.head_epochs == 1
    assert len(result.history.epoch) == 1 + result.fine_epochs


def test_auto_is_the_default_in_the_api_recipes_and_the_tuner():
    from tlkit.tuning.space import DEFAULTS

    assert tlkit.FineTuneConfig().strategy == "auto" == config_lib.DEFAULTS["strategy"]
    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}})
    assert recipe.fine_tune_config().strategy == "auto"
    assert DEFAULTS["strategy"] == "auto"


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize("head, labels, what", [
    ("regression", "values", "a regression head"),
    ("multilabel", "multi_hot", "a multi-label head"),
    ("mlp", "classes", "an MLP head (hidden_units=[4])"),
])
def test_auto_runs_gradual_on_heads_the_probe_cannot_fit(caplog, head, labels, what):
    x, y = _images()
    target = {"values": y.astype("float32")[:, None],
              "multi_hot": np.eye(3, dtype="float32")[y],
              "classes": y}[labels]
    model = tiny_model(num_classes=1 if head == "regression" else 3, head=head,
                       compile=False, **({"hidden_units": (4,)} if head == "mlp" else {}))
    with caplog.at_level(logging.INFO, logger="tlkit.training"):
        result = _fine_tune(model, (x, target), batch_size=8)
    _gradual_with(result, caplog, what, "linear classification head")


def test_auto_runs_gradual_on_an_endless_dataset(caplog):
    x, y = _images()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    with caplog.at_level(logging.INFO, logger="tlkit.training"):
        result = _fine_tune(tiny_model(compile=False), train, steps_per_epoch=2)
    _gradual_with(result, caplog, "endless dataset (.repeat())")


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_auto_runs_gradual_when_the_probe_refuses_the_labels(caplog):
    x, y = _images()
    y = np.minimum(y, 1)  # class 2 of the 3-class head has no training example
    with caplog.at_level(logging.INFO, logger="tlkit.training"):
        result = _fine_tune(tiny_model(compile=False), (x, y), batch_size=8)
    _gradual_with(result, caplog, "the linear probe cannot run",
                  "no training examples of class(es) [2]")


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize("settings, shown", [
    ({"first": 1}, "first=1"),
    ({"unfreeze": "all"}, "unfreeze='all'"),
    ({"unfreeze": "table", "table": {0: 1}}, "table={0: 1}"),
    ({"unfreeze": 2}, "unfreeze='table'"),  # the legacy "top N groups" keyword
    ({"unfreeze": UnfreezeSchedule.constant(1)}, "an UnfreezeSchedule"),
])
def test_auto_honours_an_explicit_unfreeze_schedule(caplog, settings, shown):
    x, y = _images()
    with caplog.at_level(logging.INFO, logger="tlkit.training"):
        result = _fine_tune(tiny_model(compile=False), (x, y), batch_size=8, **settings)
    _gradual_with(result, caplog, shown, "honoured (gradual)", "strategy='lp_ft'")


class TestAutoStrategy(TestCase):
    def test_auto_keeps_a_head_only_run_head_only(self, caplog):
        x, y = _images()
        with caplog.at_level(logging.INFO, logger="tlkit.training"):
            result, _ = self.run_strategy_test(
                tiny_model(compile=False), (x, y), expected_strategy="gradual",
                expected_trained={"head"}, batch_size=8, head_epochs=1, fine_epochs=0,
                patience=None)
        _gradual_with(result, caplog, "fine_epochs=0")


def test_explicit_lp_ft_still_refuses_what_auto_falls_back_from():
    x, y = _images()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    with pytest.raises(config_lib.ConfigError, match="finite dataset"):
        _fine_tune(tiny_model(compile=False), train, strategy="lp_ft", steps_per_epoch=2)
    with pytest.raises(ProbeError, match="linear head"):
        _fine_tune(tiny_model(compile=False, head="mlp", hidden_units=(4,)), (x, y),
                   strategy="lp_ft", batch_size=8)


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_auto_under_a_mirrored_strategy():
    x, y = _images()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = tiny_model(compile=False)
    result = _fine_tune(model, (x, y), (x, y), batch_size=8)
    assert result.strategy["requested"] == "auto"
    assert result.strategy["strategy"] in ("lp_ft", "linear_probe")
    assert result.strategy["probe"]["val_examples"] == len(x)


def test_multi_worker_training_falls_back_to_gradual():
    from tlkit.training.strategies import auto

    class _Resolver:
        def cluster_spec(self):
            return tf.train.ClusterSpec({"worker": ["a:1", "b:1"]})

    class _MultiWorker(tf.distribute.MultiWorkerMirroredStrategy):
        def __init__(self):  # no cluster is started: only what `auto.fallback` reads
            pass

        cluster_resolver = _Resolver()

    head = tlkit.heads.find_head(tiny_model(compile=False))
    reason = auto.fallback(tlkit.FineTuneConfig(), head, distribution=_MultiWorker())
    assert reason.startswith("multi-worker training (2 workers)")
    assert auto.fallback(tlkit.FineTuneConfig(), head,
                         distribution=tf.distribute.get_strategy()) is None


class _Watch(keras.callbacks.Callback):
    """Every weight at the start of `fit` and after each epoch."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        self.seen.append({v.path: v.numpy().copy() for v in self.model.weights})

    def on_epoch_end(self, epoch, logs=None):
        self.on_train_begin()


def test_auto_runs_full_from_the_label_budget(monkeypatch, caplog):
    from tlkit import head_training
    from tlkit.training.strategies import auto

    monkeypatch.setattr(auto, "FULL_FROM", 8)
    x, y = _images(n=36)  # 12 examples per class
    model = tiny_model(compile=False)
    start = {v.path: v.numpy().copy() for v in model.weights}
    probed, real = [], head_training.fit_linear_probe

    def watched(model, *args, **kwargs):
        result = real(model, *args, **kwargs)
        probed.append({v.path: v.numpy().copy() for v in model.weights})
        return result

    monkeypatch.setattr(head_training, "fit_linear_probe", watched)
    watch = _Watch()
    with caplog.at_level(logging.INFO, logger="tlkit.training"):
        result = _fine_tune(model, (x, y), batch_size=8, fine_epochs=2, lr=1e-2,
                            callbacks=[watch])
    record = result.strategy
    assert (record["strategy"], record["requested"]) == ("full", "auto")
    assert record["examples_per_class"] == 12
    assert record["reason"].startswith("12 labelled examples per class >= 8: full fine-tuning")
    assert any(record["reason"] in r.getMessage() for r in caplog.records
               if r.getMessage().startswith("strategy full (from auto)"))
    # No probe at this label budget: the fit starts from the model's own weights.
    assert probed == []
    head = [p for p in start if p.startswith("head")]
    begin, after_head, end = watch.seen[0], watch.seen[1], watch.seen[-1]
    assert all(np.array_equal(begin[p], start[p]) for p in start)
    # The head phase (1 epoch: the head alone), then every group.
    assert result.head_epochs == 1 and len(result.history.epoch) == 3
    assert result.history.history["unfrozen_groups"] == [0, 3, 3]
    backbone = [p for p in start if not p.startswith("head") and "moving" not in p]
    assert any(not np.array_equal(after_head[p], start[p]) for p in head)
    assert all(np.array_equal(after_head[p], start[p]) for p in backbone)
    for block in ("block1", "block2", "block3"):
        assert any(not np.array_equal(end[p], after_head[p]) for p in backbone
                   if p.startswith(block))


@pytest.mark.slow  # over 5 CPU-seconds (tests/ timings, #31)
def test_auto_below_the_label_budget_and_a_solved_probe_keep_their_choice(monkeypatch):
    from tlkit.training.strategies import auto

    x, y = _images(n=36)
    monkeypatch.setattr(auto, "FULL_FROM", 13)
    result = _fine_tune(tiny_model(compile=False), (x, y), batch_size=8)
    assert result.strategy["strategy"] == "lp_ft" and "LP-FT (probe" in result.strategy["reason"]
    # Below the budget the 0.99 rule still keeps a solved probe alone.
    monkeypatch.setattr(auto, "PROBE_SOLVED", 0.0)
    result = _fine_tune(tiny_model(compile=False), (x, y), (x, y), batch_size=8)
    assert result.strategy["strategy"] == "linear_probe"
    # A budget the caller knows (the runner's audit) is taken as given: no label pass.
    result = _fine_tune(tiny_model(compile=False), (x, y), (x, y), batch_size=8,
                        examples_per_class=13)
    assert result.strategy["strategy"] == "full" and result.strategy["examples_per_class"] == 13


def test_smallest_class_counts_labels_and_declines_one_hot():
    import tensorflow as tf

    from tlkit.training.strategies import probe

    y = np.array([0, 1, 1, 2, 2, 2])
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((6, 2)), y)).batch(4)
    assert probe.smallest_class(ds, 3) == 1
    assert probe.smallest_class(ds, 4) == 0  # a class of the head with no examples
    one_hot = tf.data.Dataset.from_tensor_slices((np.zeros((6, 2)), np.eye(3)[y])).batch(4)
    assert probe.smallest_class(one_hot, 3) is None


def test_the_runner_plans_full_from_the_label_budget(monkeypatch):
    from tlkit.runner.train import plan_stages, planned_strategy
    from tlkit.training.strategies import auto

    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "data": {"cache_features": True},
                               "phases": {"head_epochs": 2, "fine_epochs": 3}})
    assert auto.FULL_FROM is None  # the default: no budget switch, LP-FT always
    assert planned_strategy(recipe, examples_per_class=10_000) == "lp_ft"
    monkeypatch.setattr(auto, "FULL_FROM", 60)
    assert planned_strategy(recipe, examples_per_class=60) == "full"
    assert planned_strategy(recipe, examples_per_class=59) == "lp_ft"
    assert planned_strategy(recipe) == "lp_ft"
    assert plan_stages(recipe, "full") == [{"name": "head", "start": 0, "end": 2},
                                           {"name": "fine", "start": 2, "end": 5}]
    # A fallback still wins over the label budget; an explicit strategy is kept.
    scheduled = Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"schedule": "all"}})
    assert planned_strategy(scheduled, examples_per_class=1000) == "gradual"
    explicit = Recipe.from_dict({"backbone": {"name": "tiny"}, "phases": {"strategy": "lp_ft"}})
    assert planned_strategy(explicit, examples_per_class=1000) == "lp_ft"


# -- recipes: the default, the feature cache, the report's phases ---------------------------------
def _train(tmp_path, *settings):
    from tlkit import cli

    out = str(tmp_path / "run")
    args = ["-q", "train", SMOKE, "--output", out, "--set", "output.tensorboard=false",
            "--set", "phases.head_epochs=2", "--set", "phases.fine_epochs=2"]
    for setting in settings:
        args += ["--set", setting]
    assert cli.main(args) == 0
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(out, "state.json")) as f:
        state = json.load(f)
    with open(os.path.join(out, "reports", "model_card.md")) as f:
        card = f.read()
    with open(os.path.join(out, "history.json")) as f:
        history = json.load(f)
    return metrics, state, card, history


AUTO = ("phases.first=null", "phases.per_step=null")  # smoke.yaml's schedule, unset


@pytest.mark.slow
def test_a_recipe_without_phases_strategy_runs_auto_as_lp_ft_on_cached_features(tmp_path,
                                                                                monkeypatch):
    from tlkit import head_training

    extracted = []
    real = head_training.extract_feature_shards

    def counting(extractor, ds, folder, **kwargs):
        shards = real(extractor, ds, folder, **kwargs)
        extracted.append((os.path.basename(folder), shards.num_examples))
        return shards

    monkeypatch.setattr(head_training, "extract_feature_shards", counting)
    metrics, state, card, history = _train(tmp_path, *AUTO)
    assert metrics["strategy"]["requested"] == "auto"
    assert metrics["strategy"]["strategy"] in ("lp_ft", "linear_probe")
    assert f"- Strategy: `{metrics['strategy']['strategy']}` (requested `auto`)" in card
    # One stage: the probe replaces the head epochs and reads the run's feature cache.
    assert state["stages_done"] == ["all"]
    assert [name for name, _ in extracted] == ["train", "val"]
    assert os.path.isdir(str(tmp_path / "run" / "checkpoints" / "features" / "train"))
    labels = [s["label"] for s in state["segments"]]
    assert labels[0] == "linear probe (converged, L-BFGS on cached features)"
    assert "- before epoch 1: linear probe (converged, L-BFGS on cached features)" in card
    assert "head phase" not in card  # no head-phase learning rate: no head epochs ran
    assert [r["epoch"] for r in history] == [0, 1]
    if metrics["strategy"]["strategy"] == "lp_ft":
        assert labels[1:] == ["all groups + head, BN frozen"]
        assert "- epochs 1-2: all groups + head, BN frozen" in card
        assert {r["segment"] for r in history} == {"all groups + head, BN frozen"}


@pytest.mark.slow
def test_a_recipe_with_enough_labels_runs_auto_as_full_after_cached_head_epochs(tmp_path,
                                                                              monkeypatch):
    from tlkit.data.features import feature_shards
    from tlkit.training.strategies import auto

    extracted = []
    real = feature_shards._extract_part

    def counting(feature_model, ds, folder, *args):
        extracted.append(os.path.basename(folder))
        return real(feature_model, ds, folder, *args)

    monkeypatch.setattr(feature_shards, "_extract_part", counting)
    monkeypatch.setattr(auto, "FULL_FROM", 5)
    monkeypatch.setattr(auto, "PROBE_SOLVED", 1.01)  # never solved: full runs
    # Interrupted in the fine stage, then resumed: the resumed run plans the same stages.
    from tlkit.recipes import load_recipe
    from tlkit.runner import train

    class _Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    original = train._callbacks

    def interrupting(recipe, run, stage, offset, segments):
        callbacks = original(recipe, run, stage, offset, segments)
        return callbacks + [_Interrupt()] if stage == "fine" else callbacks

    monkeypatch.setattr(train, "_callbacks", interrupting)
    settings = ["output.tensorboard=false", "phases.head_epochs=2", "phases.fine_epochs=2",
                *AUTO]
    with pytest.raises(KeyboardInterrupt):
        train.train_recipe(load_recipe(SMOKE, overrides=settings),
                           output=str(tmp_path / "run"), verbose=0)
    monkeypatch.setattr(train, "_callbacks", original)
    metrics, state, card, history = _train(tmp_path, *AUTO)
    record = metrics["strategy"]
    assert (record["strategy"], record["requested"]) == ("full", "auto")
    with open(tmp_path / "run" / "reports" / "data_audit.json") as f:
        counts = json.load(f)["class_counts"]["train"]
    assert record["examples_per_class"] == min(counts.values()) >= 5
    assert f"{min(counts.values())} labelled examples per class >= 5" in record["reason"]
    # The head epochs on cached features (extracted once), then full: no probe.
    assert state["stages_done"] == ["head", "fine"]
    assert extracted == ["train", "val"]
    labels = [s["label"] for s in state["segments"]]
    assert labels == ["head only (cached features)", "all groups + head, BN frozen"]
    assert [(r["epoch"], r["stage"], r["segment"]) for r in history] == [
        (0, "head", labels[0]), (1, "head", labels[0]), (2, "fine", labels[1]),
        (3, "fine", labels[1])]


@pytest.mark.slow
@pytest.mark.step_floor
def test_smoke_recipe_with_its_schedule_runs_gradual_and_says_why(tmp_path):
    metrics, state, card, _ = _train(tmp_path)
    record = metrics["strategy"]
    assert (record["strategy"], record["requested"]) == ("gradual", "auto")
    assert "first=1" in record["reason"] and "per_step=1" in record["reason"]
    assert state["stages_done"] == ["head", "fine"]
    assert [s["label"] for s in state["segments"]][0] == "head only (cached features)"
    assert "- Strategy: `gradual` (requested `auto`): the unfreeze schedule is set" in card
    # The epochs and optimizer steps per phase (#36): the head's on cached features, then
    # fine-tuning with at least gradual's floor (16 steps) per epoch.
    budget = metrics["budget"]
    assert budget["head"]["epochs"] == 2 and budget["head"]["on_cached_features"]
    assert budget["fine"] == {"epochs": 2, "steps": 2 * max(budget["batches_per_epoch"], 16)}
    assert budget["min_steps_per_epoch"] == 16
    assert (f"- Optimizer steps: head 2 epochs, {budget['head']['steps']} steps on cached "
            f"features; fine-tuning 2 epochs, {budget['fine']['steps']} steps") in card


def _segments(recipe_phases, strategy, groups=3):
    from tlkit.runner.train import plan_segments

    recipe = Recipe.from_dict({"backbone": {"name": "tiny"}, "data": {"cache_features": True},
                               "phases": {"head_epochs": 2, "fine_epochs": 3,
                                          **recipe_phases}})
    return [(s["label"], s["start"], s["end"]) for s in plan_segments(recipe, groups,
                                                                     strategy=strategy)]


def test_report_phases_follow_the_strategy_that_ran():
    probe = ("linear probe (converged, L-BFGS on cached features)", 0, 0)
    everything = ("all groups + head, BN frozen", 0, 3)
    assert _segments({"strategy": "lp_ft"}, None) == [probe, everything]
    assert _segments({"strategy": "linear_probe"}, None) == [probe]
    # The typed record says the probe was kept; no message text is read.
    assert _segments({}, {"strategy": "linear_probe", "requested": "auto",
                          "reason": "anything", "probe_kept": True}) == [
        probe, ("all groups + head, BN frozen (then discarded: the probe's weights were kept)",
                0, 3)]
    assert _segments({}, {"strategy": "linear_probe", "requested": "auto",
                          "reason": "already reaches"}) == [probe]
    head = ("head only (cached features)", 0, 2)
    assert _segments({"strategy": "full"}, None) == [head, ("all groups + head, BN frozen", 2, 5)]
    assert _segments({"strategy": "surgical", "surgical_group": 1}, None) == [
        head, ("group 1 + head, BN frozen", 2, 5)]
    assert _segments({"strategy": "surgical", "surgical_group": "auto"},
                     {"strategy": "surgical", "surgical_group": "block2"}) == [
        head, ("block2 + head, BN frozen", 2, 5)]
    # auto before it runs: LP-FT, or gradual where it falls back (an explicit schedule)
    assert _segments({}, None) == [probe, everything]
    assert _segments({"schedule": "all"}, None) == [head, ("all groups + head, BN frozen", 2, 5)]


def test_plot_skips_stages_without_epochs(tmp_path, monkeypatch):
    from tlkit.reports import plots

    marked = []
    monkeypatch.setattr(plots, "_mark_stages", lambda ax, stages: marked.append(stages))
    history = [{"epoch": e, "stage": "all", "loss": 1.0 - e / 10} for e in range(3)]
    stages = [{"name": "s0", "label": "probe", "short": "probe", "start": 0, "end": 0},
              {"name": "s1", "label": "all", "short": "all", "start": 0, "end": 3}]
    plots.plot_learning_curves(history, str(tmp_path / "curves.png"), stages=stages)
    assert marked and all([s["short"] for s in m] == ["all"] for m in marked)
