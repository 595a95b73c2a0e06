"""Where a full fine-tune's CPU time goes: tlkit's full fine-tune profiled op by op.

Runs `tlkit.fine_tune` (all groups trainable, constant LR) on EfficientNet-Lite0 at 64 px and
records the TensorFlow profiler's trace of a window of training steps through Keras's own
`TensorBoard(profile_batch=...)` callback. The trace's kernel events are summed by op type and
grouped by the kind of layer they belong to (regular and pointwise convolutions, depthwise
convolutions, dense, batch normalization and the rest). Beside each group: its training FLOPs,
counted from the layers' shapes (forward + gradient w.r.t. input + gradient w.r.t. weights,
3x the forward FLOPs; depthwise and regular convolutions alike), the GFLOP/s it reaches and
that as a fraction of a large float32 matmul measured in the same run (the machine's
practical peak). It answers which ops bound the full fine-tune's fraction of peak
(`training_overhead.py` measures the whole step).

    .venv/bin/python benchmarks/op_breakdown.py [--backbone efficientnet_lite0] [--size 64] \
        [--batch 32] [--steps 20]

Writes benchmarks/results/op_breakdown.json; the TensorBoard trace stays in `--logdir` when
given (open it with TensorBoard's profile plugin).
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import matmul_peak_gflops, synthetic_images, write_json  # noqa: E402

GROUPS = {
    # op type (the part after ":" in the trace's kernel event names) -> layer group
    "Conv2D": "conv", "Conv2DBackpropInput": "conv", "Conv2DBackpropFilter": "conv",
    "_FusedConv2D": "conv",
    "DepthwiseConv2dNative": "depthwise",
    "DepthwiseConv2dNativeBackpropInput": "depthwise",
    "DepthwiseConv2dNativeBackpropFilter": "depthwise",
    "MatMul": "dense", "_FusedMatMul": "dense", "BatchMatMulV2": "dense",
    "FusedBatchNormV3": "batch_norm", "FusedBatchNormGradV3": "batch_norm",
}
"""Op types by layer group; every other op type (activations, adds, the optimizer's updates,
casts, reductions) counts as "other"."""


def layer_flops(model) -> dict:
    """Forward FLOPs per example by layer group, from each layer's weights and output shape
    (a multiply-add counts 2)."""
    import keras

    flops = collections.Counter()
    for layer in _leaf_layers(model):
        if not layer.weights:
            continue
        out = layer.output.shape
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, channels, mult = layer.kernel.shape
            flops["depthwise"] += 2 * out[1] * out[2] * kh * kw * channels * mult
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            flops["conv"] += 2 * out[1] * out[2] * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            positions = 1
            for d in out[1:-1]:
                positions *= d
            flops["dense"] += 2 * positions * cin * cout
    return dict(flops)


def _leaf_layers(model):
    """Every layer without sublayers, inside nested models and tlkit's backbone layers (which
    hold their Keras model as `.model`)."""
    for layer in model.layers:
        inner = getattr(layer, "model", None)
        if inner is not None and hasattr(inner, "layers"):
            yield from _leaf_layers(inner)
        elif getattr(layer, "layers", None):
            yield from _leaf_layers(layer)
        else:
            yield layer


def op_times(logdir: str) -> tuple[dict, float, int]:
    """Seconds of kernel time by op type in the newest trace under `logdir`, the wall seconds
    the profiled steps took, and how many steps were profiled. Reads the trace's XSpace proto
    directly (TensorBoard's profile plugin is not a dependency)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    if not paths:
        raise RuntimeError(f"no profiler trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    seconds, wall, steps = collections.Counter(), 0.0, 0
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = plane.event_metadata
        for line in plane.lines:
            for event in line.events:
                name = names[event.metadata_id].name
                if line.name == "python":
                    if name == "Profiled batch":
                        wall += event.duration_ps / 1e12
                        steps += 1
                    continue
                # Kernel events are "<op name>:<op type>"; the executor's own regions
                # (ExecutorState::Process, ParallelFor, ...) hold no ":" after a "/".
                if ":" in name and "/" in name.split(":")[0] and "::" not in name:
                    seconds[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return dict(seconds), wall, steps


def run(args) -> dict:
    import keras

    import tlkit

    keras.utils.set_random_seed(0)
    n = args.batch * (args.steps + 10)
    ds = synthetic_images(n, args.size, args.batch)
    backbone = tlkit.backbones.get(args.backbone, image_size=args.size)
    model = tlkit.build_model(backbone, num_classes=10, input_shape=(args.size, args.size, 3))
    logdir = args.logdir or tempfile.mkdtemp(prefix="op_breakdown_")
    # Keras's TensorBoard callback profiles batches [first, last] of the first epoch; the
    # first 5 steps (tracing, warm-up) stay out.
    profile = keras.callbacks.TensorBoard(logdir, profile_batch=(6, 5 + args.steps),
                                          write_graph=False, update_freq="epoch")
    start = time.perf_counter()
    tlkit.fine_tune(model, ds, epochs=(0, 1), unfreeze="all", lr_schedule="constant",
                    verbose=0, early_stopping_patience=None, callbacks=[profile])
    seconds, wall, steps = op_times(logdir)
    total = sum(seconds.values())
    groups = collections.Counter()
    for op, s in seconds.items():  # oneDNN's kernels are "_MklNative<op>" / "_Mkl<op>"
        groups[GROUPS.get(op.removeprefix("_MklNative").removeprefix("_Mkl"), "other")] += s
    forward = layer_flops(model)
    peak = matmul_peak_gflops()
    per_step = {g: s / max(steps, 1) for g, s in groups.items()}
    rows = {}
    for group in ("conv", "depthwise", "dense", "batch_norm", "other"):
        train_flops = 3 * forward.get(group, 0) * args.batch
        sec = per_step.get(group, 0.0)
        gflops = train_flops / sec / 1e9 if sec and train_flops else None
        rows[group] = {
            "kernel_ms_per_step": 1e3 * sec,
            "share_of_kernel_time": sec / (total / max(steps, 1)) if total else None,
            "train_gflop_per_step": train_flops / 1e9,
            "share_of_flops": train_flops / (3 * sum(forward.values()) * args.batch),
            "gflop_per_s": gflops,
            "fraction_of_peak": gflops / peak if gflops else None,
        }
    step_s = wall / max(steps, 1)
    achieved = 3 * sum(forward.values()) * args.batch / step_s / 1e9
    return {
        "backbone": args.backbone, "size": args.size, "batch": args.batch,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "the build's default"),
        "profiled_steps": steps, "step_ms": 1e3 * step_s,
        "kernel_ms_per_step": 1e3 * total / max(steps, 1),
        "threads_busy": total / wall if wall else None,
        "matmul_peak_gflop_per_s": peak,
        "train_gflop_per_s": achieved, "fraction_of_peak": achieved / peak,
        "groups": rows,
        "op_types_ms_per_step": {op: 1e3 * s / max(steps, 1) for op, s in
                                 sorted(seconds.items(), key=lambda kv: -kv[1])[:25]},
        "wall_seconds": time.perf_counter() - start,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="profiled training steps")
    parser.add_argument("--logdir", default="", help="keep the TensorBoard trace here")
    parser.add_argument("--onednn", choices=("default", "on", "off"), default="default",
                        help="TF_ENABLE_ONEDNN_OPTS for this run (default: the build's)")
    parser.add_argument("--out", default="op_breakdown")
    args = parser.parse_args(argv)
    if args.onednn != "default":  # read when TensorFlow starts, which run() imports
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    results = run(args)
    for group, row in results["groups"].items():
        fraction = row["fraction_of_peak"]
        print(f"{group:10s} {row['kernel_ms_per_step']:7.1f} ms/step "
              f"({100 * (row['share_of_kernel_time'] or 0):4.1f}% of kernel time, "
              f"{100 * row['share_of_flops']:4.1f}% of FLOPs) "
              f"{'' if fraction is None else f'{100 * fraction:5.1f}% of peak'}")
    print(f"step {results['step_ms']:.1f} ms: {100 * results['fraction_of_peak']:.1f}% of the "
          f"{results['matmul_peak_gflop_per_s']:.0f} GFLOP/s matmul peak")
    print(write_json(args.out, results))


if __name__ == "__main__":
    main()
