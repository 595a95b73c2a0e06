"""BatchNorm policy when fine-tuning: frozen BN statistics vs updating ones, same data and seed.

EfficientNet-Lite0 (ImageNet) on a Fashion-MNIST subset, `fine_tune(unfreeze="all")` with
`bn_policy="frozen"` (BN always in inference mode) and `bn_policy="update"` (unfrozen BN layers
use batch statistics and update their moving averages). Reports accuracy on a fixed eval set
(official test split) after the head phase (identical for both: the backbone is frozen then)
and after unfreezing, and the wall seconds of each run.

    .venv/bin/python benchmarks/bn_policy.py [--per-class 100] [--size 48] [--epochs 2 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402

POLICIES = ("frozen", "update")


def _record_callback():
    """A Keras callback collecting each epoch's val accuracy in its `accs` list."""
    import keras

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.accs = []

        def on_epoch_end(self, epoch, logs=None):
            self.accs.append(float((logs or {}).get("val_accuracy", float("nan"))))

    return Record()


def run(per_class=100, size=48, head_epochs=2, fine_epochs=4, lr=1e-4, batch=32,
        eval_per_class=50, unfreeze="all"):
    import keras

    import tlkit

    data = tlkit.data.fashion_mnist(num_per_class=per_class, eval_per_class=eval_per_class,
                                    seed=0)
    results = {}
    for policy in POLICIES:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = tlkit.build_model(tlkit.backbones.get("efficientnet_lite0", image_size=size),
                                  num_classes=data.num_classes, input_shape=data.input_shape,
                                  class_names=data.class_names, bn_policy=policy)
        record = _record_callback()
        accs = record.accs

        start = time.perf_counter()
        tlkit.fine_tune(model, data.pipeline("train", batch, training=True, seed=0),
                        data.pipeline("test", 64, training=False),
                        epochs=(head_epochs, fine_epochs), head_lr=1e-3, lr=lr,
                        unfreeze=unfreeze, bn_policy=policy, early_stopping_patience=None,
                        verbose=0, callbacks=[record])
        seconds = time.perf_counter() - start
        results[policy] = {
            "after_head": accs[head_epochs - 1] if head_epochs else None,
            "after_unfreezing": accs[-1],
            "best_after_unfreezing": max(accs[head_epochs:]) if fine_epochs else None,
            "val_accuracy_per_epoch": accs,
            "seconds": seconds,
        }
        print(f"  {policy:<7} head {results[policy]['after_head']:.3f}  "
              f"unfrozen {accs[-1]:.3f}  {seconds:.0f} s", flush=True)
    return {
        "dataset": "Fashion-MNIST",
        "train_images": int(data.num_examples("train")),
        "eval_images": int(data.num_examples("test")),
        "image_size": size,
        "epochs": [head_epochs, fine_epochs],
        "fine_lr": lr,
        "unfreeze": unfreeze,
        "results": results,
        "difference_after_unfreezing": results["frozen"]["after_unfreezing"]
        - results["update"]["after_unfreezing"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, nargs=2, default=(2, 4), metavar=("HEAD", "FINE"))
    parser.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate")
    parser.add_argument("--eval-per-class", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="50 per class, epochs 1 2")
    args = parser.parse_args(argv)
    per_class, epochs = args.per_class, tuple(args.epochs)
    if args.quick:
        per_class, epochs = 50, (1, 2)
    print(f"Fashion-MNIST {per_class}/class, EfficientNet-Lite0 {args.size}px, "
          f"epochs head {epochs[0]} + fine {epochs[1]} (unfreeze all, lr {args.lr:g})", flush=True)
    r = run(per_class, args.size, epochs[0], epochs[1], args.lr, eval_per_class=args.eval_per_class)
    print(f"\n{'bn_policy':<10} {'after head':>11} {'after unfreezing':>17} {'seconds':>8}")
    for policy in POLICIES:
        p = r["results"][policy]
        print(f"{policy:<10} {p['after_head']:>11.3f} {p['after_unfreezing']:>17.3f} "
              f"{p['seconds']:>8.0f}")
    r["args"] = vars(args)
    name = "bn_policy" + ("_quick" if args.quick else "")
    print("wrote", write_json(name, r))


if __name__ == "__main__":
    main()
