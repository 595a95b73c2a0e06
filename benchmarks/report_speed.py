"""Report generation speed: `tlkit report RUN` on 10,000 test examples (goal <= 30 s, 2 cores).

Trains a small run (the tiny SavedModel backbone of the smoke recipe on Fashion-MNIST, 100
images per class; the official test set, 1,000 per class, is the evaluation split), then times
`tlkit.runner.report.report_run`: loading the data and model, predicting the test split once (or reading
the predictions the training run saved), metrics, top losses with their images, calibration,
slices and writing `report.html`, both ways. The report-only part
(everything after the predictions, from `tlkit.reports` on precomputed probabilities) is timed
separately.

    .venv/bin/python benchmarks/report_speed.py [--quick] [--test-per-class 1000]
        [--backbone efficientnet_lite0 --image-size 128]   # the quickstart's model
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402

RECIPE = """
name: report_speed
seed: 0
backbone: {backbone}
data:
  source: fashion_mnist
  splits: {{val_fraction: 0.1}}
  per_class: {{train: 100, val: 20, test: {test}}}
  batch_size: 256
  cache_features: true
phases: {{head_epochs: 3, fine_epochs: 1, schedule: all, bn_policy: frozen}}
optimizer: {{name: adam, lr: 1.0e-3, head_lr: 1.0e-2}}
output: {{export: [keras], tensorboard: false, temperature_scaling: true}}
"""


def run(test_per_class=1000, backbone="tiny", image_size=None):
    import numpy as np

    from tlkit import reports
    from tlkit.recipes import load_recipe
    from tlkit.runner.report import report_run
    from tlkit.runner.rundir import RunDir
    from tlkit.runner.train import train_recipe

    folder = tempfile.mkdtemp(prefix="report_speed_")
    recipe_path = os.path.join(folder, "recipe.yaml")
    with open(recipe_path, "w", encoding="utf-8") as f:
        spec = {"name": backbone}
        if image_size:
            spec["options"] = {"image_size": image_size}
        f.write(RECIPE.format(test=test_per_class, backbone=json.dumps(spec)))
    run_dir = train_recipe(load_recipe(recipe_path), output=os.path.join(folder, "run"), verbose=0)
    # `tlkit report` right after training reuses the predictions the evaluation saved;
    # without them (or for another model) it predicts the split once.
    start = time.perf_counter()
    page = report_run(run_dir)
    cached_s = time.perf_counter() - start
    os.remove(os.path.join(run_dir, "reports", "predictions.npz"))
    start = time.perf_counter()
    page = report_run(run_dir)
    total_s = time.perf_counter() - start
    metrics = RunDir(run_dir).read_json("metrics.json")

    # The report alone, on precomputed probabilities (no model, no data loading).
    rng = np.random.default_rng(0)
    n, k = metrics["num_examples"], 10
    y = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    start = time.perf_counter()
    m = reports.classification_metrics(y, probs, [str(i) for i in range(k)])
    m["warnings"] = []
    losses = reports.top_losses_from_predictions(y, probs, [str(i) for i in range(k)], n=16)
    losses.inputs = rng.uniform(0, 255, (16, 28, 28, 1))
    reports.write_html_report(
        os.path.join(folder, "synthetic.html"),
        title="synthetic", summary={}, metrics=m, class_names=[str(i) for i in range(k)],
        history=RunDir(run_dir).history(), top_losses=losses,
        calibration=reports.calibration_summary(y, probs, reports.fit_temperature(y, probs)),
        slices=reports.sliced_metrics(y, probs, rng.integers(0, 4, n).astype(str), "group"),
    )
    report_only_s = time.perf_counter() - start
    size = os.path.getsize(page)
    shutil.rmtree(folder)
    return {
        "backbone": backbone,
        "image_size": image_size,
        "test_examples": int(metrics["num_examples"]),
        "report_run_seconds": round(total_s, 2),
        "report_run_saved_predictions_seconds": round(cached_s, 2),
        "report_only_seconds": round(report_only_s, 2),
        "goal_seconds": 30,
        "meets_goal": total_s <= 30,
        "report_html_bytes": size,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 test images per class")
    parser.add_argument("--test-per-class", type=int, default=1000)
    parser.add_argument("--backbone", default="tiny",
                        help="recipe backbone name, e.g. efficientnet_lite0 (default: tiny)")
    parser.add_argument("--image-size", type=int, help="backbone image_size option")
    args = parser.parse_args(argv)
    result = run(100 if args.quick else args.test_per_class, args.backbone, args.image_size)
    result["command"] = " ".join(["python benchmarks/report_speed.py", *(argv or sys.argv[1:])])
    name = "report_speed_quick" if args.quick else f"report_speed_{args.backbone}"
    print(f"report for {result['test_examples']} test examples: {result['report_run_seconds']} s "
          f"(tlkit report, predicting); "
          f"{result['report_run_saved_predictions_seconds']} s (tlkit report, saved predictions); "
          f"report from predictions alone: {result['report_only_seconds']} s; goal <= 30 s")
    print(f"written: {write_json(name, result)}")


if __name__ == "__main__":
    main()
