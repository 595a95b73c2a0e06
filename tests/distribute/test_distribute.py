"""Strategy choice, distribution plans, TPU checks, and MirroredStrategy vs one device."""

import json
import subprocess
import sys

import pytest
import tensorflow as tf

from tlkit import distribute


def test_auto_is_default_strategy_on_a_plain_cpu(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.setattr(distribute, "_tpu_hinted", lambda: False)
    strategy = distribute.get_strategy("auto")
    assert strategy is tf.distribute.get_strategy()
    plan = distribute.distribution_plan(strategy, per_replica_batch=32)
    assert (plan.device, plan.replicas, plan.global_batch, plan.dtype_policy) == (
        "cpu",
        1,
        32,
        "float32",
    )
    assert plan.steps_per_execution == 1 and not plan.drop_remainder


def test_auto_picks_multiworker_when_tf_config_has_a_cluster(monkeypatch):
    monkeypatch.setattr(distribute, "_tpu_hinted", lambda: False)
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {
                "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                "task": {"type": "worker", "index": 0},
            }
        ),
    )
    created = []
    monkeypatch.setattr(
        tf.distribute, "MultiWorkerMirroredStrategy", lambda: created.append(1) or "mwms"
    )
    assert distribute.get_strategy("auto") == "mwms" and created == [1]


def test_bad_strategy_requests_have_clear_errors(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(distribute.DistributionError, match="Unknown strategy"):
        distribute.get_strategy("quantum")
    with pytest.raises(distribute.DistributionError, match="needs TF_CONFIG"):
        distribute.get_strategy("multiworker")
    with pytest.raises(distribute.DistributionError, match="No Cloud TPU found"):
        distribute.get_strategy("tpu")
    if not tf.config.list_logical_devices("GPU"):
        with pytest.raises(distribute.DistributionError, match="no GPU is visible"):
            distribute.get_strategy("gpu")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(distribute.DistributionError, match="not valid JSON"):
        distribute.get_strategy("auto")


class _FakeTPU:
    num_replicas_in_sync = 8


def test_tpu_plan_and_preflight_checks(monkeypatch):
    monkeypatch.setattr(distribute, "is_tpu", lambda s: isinstance(s, _FakeTPU))
    strategy = _FakeTPU()
    plan = distribute.distribution_plan(strategy, per_replica_batch=16, scale_lr=True)
    assert plan.device == "tpu" and plan.global_batch == 128 and plan.learning_rate_scale == 8
    assert plan.dtype_policy == "mixed_bfloat16" and plan.drop_remainder
    assert plan.steps_per_execution == 32
    with pytest.raises(distribute.DistributionError, match="must be on Cloud Storage"):
        distribute.check_tpu_ready(strategy, paths=["gs://bucket/data", "/home/me/ckpt"])
    ragged = tf.data.Dataset.range(10).batch(3)
    with pytest.raises(distribute.DistributionError, match="drop_remainder=True"):
        distribute.check_tpu_ready(strategy, paths=["gs://b/x"], dataset=ragged)
    distribute.check_tpu_ready(
        strategy,
        paths=["gs://b/x"],
        dataset=tf.data.Dataset.range(10).batch(3, drop_remainder=True),
    )


def test_batch_size_default_comes_from_the_plan(monkeypatch):
    strategy = tf.distribute.get_strategy()
    device = distribute.device_kind(strategy)
    plan = distribute.distribution_plan(strategy)
    assert plan.per_replica_batch == distribute.DEFAULT_PER_REPLICA_BATCH[device]
    assert distribute.distribution_plan(strategy, 8).per_replica_batch == 8  # given: kept
    monkeypatch.setattr(distribute, "is_tpu", lambda s: isinstance(s, _FakeTPU))
    tpu = distribute.distribution_plan(_FakeTPU())
    assert (tpu.per_replica_batch, tpu.global_batch) == (128, 1024)


def test_mixed_precision_choices():
    strategy = tf.distribute.get_strategy()
    assert distribute.distribution_plan(strategy, 8, mixed_precision=True).dtype_policy == "mixed_bfloat16"
    assert (
        distribute.distribution_plan(strategy, 8, mixed_precision="mixed_float16").dtype_policy
        == "mixed_float16"
    )
    with pytest.raises(ValueError, match="mixed_precision"):
        distribute.distribution_plan(strategy, 8, mixed_precision="fp8")


def test_dtype_policy_context_restores_global_policy():
    import keras

    before = keras.config.dtype_policy().name
    with distribute.dtype_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before


def test_shard_policy_is_set_on_dataset():
    ds = distribute.distribute_dataset(tf.data.Dataset.range(4), "file")
    assert (
        ds.options().experimental_distribute.auto_shard_policy
        == tf.data.experimental.AutoShardPolicy.FILE
    )
    with pytest.raises(ValueError, match="shard_policy"):
        distribute.distribute_dataset(tf.data.Dataset.range(4), "rows")


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_matches_one_device():
    # keras#21069: fit under MirroredStrategy. Two replicas must train like one device.
    out = subprocess.run(
        [sys.executable, "-m", "tlkit.testing.mirrored_check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["max_weight_diff"] < 1e-4, result
    assert result["loss_mirrored"] == pytest.approx(result["loss_single"], rel=1e-4)


def test_the_0x_names_still_work_with_a_deprecation_warning():
    """`plan`, `StrategyError` and `config.STRATEGIES` were renamed ("strategy" and "plan" also
    named the fine-tuning method and plans): the old names give the new objects and warn."""
    from tlkit import config

    strategy = tf.distribute.get_strategy()
    with pytest.warns(DeprecationWarning, match=r"tlkit\.distribute\.plan is deprecated.*"
                      r"use tlkit\.distribute\.distribution_plan"):
        old = distribute.plan
    assert old is distribute.distribution_plan
    assert old(strategy, 8) == distribute.distribution_plan(strategy, 8)
    with pytest.warns(DeprecationWarning, match="use tlkit.distribute.DistributionError"):
        assert distribute.StrategyError is distribute.DistributionError
    with pytest.warns(DeprecationWarning, match="use tlkit.config.DISTRIBUTIONS"):
        assert config.STRATEGIES == config.DISTRIBUTIONS
    with pytest.raises(AttributeError, match="has no attribute 'plans'"):
        distribute.plans  # noqa: B018


def test_the_moved_schedules_module_warns_under_its_old_name():
    import tlkit
    from tlkit.optimizers import schedules

    with pytest.warns(DeprecationWarning, match="use tlkit.optimizers.schedules"):
        assert tlkit.schedules is schedules
    with pytest.warns(DeprecationWarning):  # every use, not only the first
        tlkit.schedules  # noqa: B018
