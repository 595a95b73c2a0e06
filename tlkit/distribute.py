"""tf.distribute strategies chosen for the user: CPU, one or many GPUs, multi-worker, Cloud TPU.

`get_strategy("auto")` picks a TPU when a TPU cluster resolver finds one, a
`MultiWorkerMirroredStrategy` when `TF_CONFIG` describes a cluster, a `MirroredStrategy` over all
GPUs when there are several, else the default strategy. Everything tlkit builds (model, optimizer
with layer-wise LR, unfreeze callback, metrics) should be created under `strategy.scope()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os

import keras
import tensorflow as tf

from tlkit._deprecation import renamed
from tlkit.compat import apply_keras_fixes  # noqa: F401  (tlkit.distribute.apply_keras_fixes)
from tlkit.config import DISTRIBUTIONS

logger = logging.getLogger(__name__)



class DistributionError(RuntimeError):
    """A requested distribution (a `tf.distribute` strategy) cannot be set up here.
    (Called `StrategyError` before: that name still works, with a `DeprecationWarning`.)"""


def _tf_config_workers() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise DistributionError(f"TF_CONFIG is not valid JSON ({err}): {raw[:200]}") from None
    cluster = config.get("cluster", {})
    return sum(len(cluster.get(k, [])) for k in ("chief", "worker"))


def _tpu_hinted() -> bool:
    return bool(
        os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
        or os.environ.get("KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS")
        or os.path.exists("/dev/accel0")
        or os.path.exists("/dev/vfio/0")
    )


def connect_tpu(name: str | None = None) -> tf.distribute.TPUStrategy:
    """Connects to a Cloud TPU (VM: `name="local"`; pod/node: its name) and returns a TPUStrategy."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        raise DistributionError(
            f"No Cloud TPU found (tpu={name!r}: {str(err).splitlines()[0][:200]}). On a TPU VM use "
            "`--distribute tpu:local`; elsewhere pass the TPU name, or use `auto`/`cpu`/`gpu`."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Returns the tf.distribute strategy for `name`.

    Args:
        name: `"auto"`, `"cpu"` (default strategy on the CPU), `"gpu"` (one GPU), `"mirrored"`
            (all local GPUs, or all logical CPUs when there is no GPU), `"multiworker"` (needs
            `TF_CONFIG`), `"tpu"` or `"tpu:<name>"`.

    Example:
    ```python
    strategy = tlkit.distribute.get_strategy("auto")
    with strategy.scope():
        model = tlkit.build_model(...)
    ```
    """
    kind, _, arg = (name or "auto").partition(":")
    if kind not in DISTRIBUTIONS:
        raise DistributionError(f"Unknown strategy {name!r}. Expected one of {DISTRIBUTIONS} (or 'tpu:NAME').")
    if kind == "auto":
        if _tpu_hinted():
            try:
                return connect_tpu(os.environ.get("TPU_NAME"))
            except DistributionError as err:
                logger.warning("TPU hinted but not reachable, falling back: %s", err)
        if _tf_config_workers() > 1:
            return tf.distribute.MultiWorkerMirroredStrategy()
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if kind == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if kind == "gpu":
        gpus = tf.config.list_logical_devices("GPU")
        if not gpus:
            raise DistributionError("strategy 'gpu' asked for, but no GPU is visible to TensorFlow.")
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    if kind == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if kind == "multiworker":
        if _tf_config_workers() < 1:
            raise DistributionError(
                "strategy 'multiworker' needs TF_CONFIG describing the cluster, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return connect_tpu(arg or os.environ.get("TPU_NAME"))


def split_logical_cpus(n: int = 2) -> None:
    """Splits the CPU into `n` logical devices (for testing MirroredStrategy without GPUs).

    Must run before TensorFlow initializes its devices (first op); an explicit user call, never
    done at import.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as err:
        raise DistributionError(
            f"Could not split the CPU into {n} devices: TensorFlow is already initialized ({err}). "
            "Call split_logical_cpus() first thing in the process."
        ) from None


def is_tpu(strategy) -> bool:
    return isinstance(strategy, tf.distribute.TPUStrategy | tf.distribute.experimental.TPUStrategy)


def device_kind(strategy) -> str:
    """`"tpu"`, `"gpu"` or `"cpu"`: where the strategy computes."""
    if is_tpu(strategy):
        return "tpu"
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no explicit devices
        devices = ()
    if any("GPU" in d.upper() for d in devices):
        return "gpu"
    if not devices and tf.config.list_logical_devices("GPU"):
        return "gpu"
    return "cpu"


@dataclasses.dataclass
class DistributionPlan:
    """What a run does under a strategy: batch sizes, LR scaling, dtype policy, execution."""

    strategy_name: str
    device: str
    replicas: int
    per_replica_batch: int
    global_batch: int
    learning_rate_scale: float
    dtype_policy: str
    steps_per_execution: int
    drop_remainder: bool
    jit_compile: bool | str

    def describe(self) -> str:
        return (
            f"{self.strategy_name} on {self.replicas} {self.device} replica(s): global batch "
            f"{self.global_batch} ({self.per_replica_batch}/replica), LR x{self.learning_rate_scale:g}, "
            f"policy {self.dtype_policy}, steps_per_execution {self.steps_per_execution}"
        )


# The per-replica batch when the caller gives none (`distribution_plan(strategy, None)`): 32 on a CPU (the
# usual fine-tuning batch; larger ones only slow each step there), 64 on a GPU (fits a 224 px
# EfficientNet / ResNet-50 in mixed precision on a 16 GB card), 128 on a TPU core (the MXU is
# 128 x 128: Cloud TPU's performance guide asks for per-core batches that are multiples of 128).
DEFAULT_PER_REPLICA_BATCH = {"cpu": 32, "gpu": 64, "tpu": 128}


def distribution_plan(
    strategy,
    per_replica_batch: int | None = None,
    scale_lr: bool = False,
    mixed_precision: str | bool = "auto",
    steps_per_execution: int | None = None,
) -> DistributionPlan:
    """Derives batch sizes, LR scale and precision for `strategy`.

    `per_replica_batch=None` takes the device's default (`DEFAULT_PER_REPLICA_BATCH`: 32 on
    CPU, 64 on GPU, 128 per TPU core): the one place tlkit's short path and recipes without
    `data.batch_size` get their batch size from.
    Global batch = per-replica batch x replicas; with `scale_lr` the learning rate is scaled
    linearly by the number of replicas (Goyal et al. 2017). Mixed precision `"auto"` gives
    `mixed_bfloat16` on TPU, `mixed_float16` (Keras adds loss scaling) on GPU, `float32` on CPU.
    TPUs get `steps_per_execution=32` and `drop_remainder=True` (static shapes).
    (Called `plan` before: that name still works, with a `DeprecationWarning`.)

    Example:
    ```python
    strategy = tlkit.distribute.get_strategy("auto")
    tlkit.distribute.distribution_plan(strategy).per_replica_batch  # 32 on a CPU
    ```
    """
    replicas = int(strategy.num_replicas_in_sync)
    device = device_kind(strategy)
    if mixed_precision == "auto":
        policy = {"tpu": "mixed_bfloat16", "gpu": "mixed_float16"}.get(device, "float32")
    elif mixed_precision is True:
        policy = "mixed_bfloat16" if device in ("tpu", "cpu") else "mixed_float16"
    elif mixed_precision in (False, None, "float32", "off"):
        policy = "float32"
    elif mixed_precision in ("mixed_float16", "mixed_bfloat16"):
        policy = mixed_precision
    else:
        raise ValueError(
            "Expected mixed_precision in ('auto', True, False, 'mixed_float16', 'mixed_bfloat16'). "
            f"Received: {mixed_precision!r}"
        )
    tpu = device == "tpu"
    if per_replica_batch is None:
        per_replica_batch = DEFAULT_PER_REPLICA_BATCH[device]
    return DistributionPlan(
        strategy_name=type(strategy).__name__,
        device=device,
        replicas=replicas,
        per_replica_batch=int(per_replica_batch),
        global_batch=int(per_replica_batch) * replicas,
        learning_rate_scale=float(replicas) if scale_lr else 1.0,
        dtype_policy=policy,
        steps_per_execution=steps_per_execution or (32 if tpu else 1),
        drop_remainder=tpu,
        jit_compile="auto" if device != "cpu" else False,
    )


@contextlib.contextmanager
def dtype_policy(name: str):
    """Sets Keras's global dtype policy for the block and restores the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def distribute_dataset(ds: tf.data.Dataset, shard_policy: str = "data") -> tf.data.Dataset:
    """Sets the auto-shard policy Keras's `fit` uses when it distributes `ds`.

    `"data"` shards by element (right for in-memory and single-file data), `"file"` by input file
    (many TFRecord files), `"off"` for none.
    """
    policies = {
        "data": tf.data.experimental.AutoShardPolicy.DATA,
        "file": tf.data.experimental.AutoShardPolicy.FILE,
        "auto": tf.data.experimental.AutoShardPolicy.AUTO,
        "off": tf.data.experimental.AutoShardPolicy.OFF,
    }
    if shard_policy not in policies:
        raise ValueError(f"Expected shard_policy in {sorted(policies)}. Received: {shard_policy!r}")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policies[shard_policy]
    return ds.with_options(options)


def check_tpu_ready(strategy, paths=(), dataset=None) -> None:
    """Fails early when a TPU run would fail late.

    On a TPU, data, checkpoint and log paths must be `gs://` (TPU workers can't read the VM's
    local disk: tensorflow#49177, #64117), and batches need static shapes (`drop_remainder=True`).
    """
    if not is_tpu(strategy):
        return
    local = [p for p in paths if p and not str(p).startswith("gs://")]
    if local:
        raise DistributionError(
            "On a Cloud TPU, data, checkpoint and log paths must be on Cloud Storage (gs://...); "
            f"these are local: {local}. Copy them to a bucket and point the recipe at it."
        )
    if dataset is not None:
        check_static_batches(dataset)


def check_static_batches(dataset: tf.data.Dataset) -> None:
    """Raises when the batch dimension is unknown (a TPU needs `drop_remainder=True`)."""
    for spec in tf.nest.flatten(dataset.element_spec):
        if spec.shape.rank and spec.shape[0] is None:
            raise DistributionError(
                f"Batches have a dynamic batch size ({spec.shape}); a TPU needs static shapes. "
                "Batch with drop_remainder=True."
            )


@contextlib.contextmanager
def strategy_scope(strategy="auto", mixed_precision=False, scale_lr=False):
    """`get_strategy(strategy)`'s scope; with `mixed_precision`, the `mixed_float16` (GPU) or
    `mixed_bfloat16` (CPU / TPU) dtype policy, restored on exit. Yields the strategy."""
    name = strategy
    strategy = get_strategy(name)
    policy = None
    if mixed_precision:
        policy = "mixed_float16" if device_kind(strategy) == "gpu" else "mixed_bfloat16"
    if strategy.num_replicas_in_sync > 1 or name != "auto":
        logger.info("distribution: %s", distribution_plan(strategy, 1, scale_lr, bool(policy))
                    .describe().replace("global batch 1 (1/replica), ", ""))
    with contextlib.ExitStack() as stack:
        if policy:
            stack.enter_context(dtype_policy(policy))
        stack.enter_context(strategy.scope())
        yield strategy


# The names of 0.x: `plan` (now `distribution_plan`: "plan" also named the fine-tuning plan and
# the runner's stage plan) and `StrategyError` ("strategy" also names the fine-tuning method).
__getattr__ = renamed(__name__, {"plan": "distribution_plan", "StrategyError": "DistributionError"})
