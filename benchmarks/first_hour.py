"""A user's first hour: the README's three lines and `tlkit train` on a folder of their own photos.

Generates a 3-class folder of photo-like images (`sunset`, `forest`, `sea`: gradients, discs,
trunks and waves with jittered colours, noise and blur) the way a phone folder comes: every
image its own size (40-300 px a side), JPEG and PNG mixed, about one in eight greyscale and one
RGBA. Then, as a new user would:

1. the three lines, in this process:
   `d = tlkit.data.from_image_folder(path); m = tlkit.build_model("efficientnet_lite0", d);
   r = tlkit.fine_tune(m, d)`;
2. the CLI, in a subprocess: `tlkit train` on a recipe with only `backbone.name` and
   `data: {source: folder, path}`.

Records the wall time of each, the test accuracy each reports (the default split's held-out
10%), and the accuracy of each model on a second generated folder of unseen images (a larger
held-out set), with the command, the commit and the machine.

    .venv/bin/python benchmarks/first_hour.py            # 40 images per class (~3-5 min, 2 cores)
    .venv/bin/python benchmarks/first_hour.py --quick    # 12 per class, 1 fine-tuning epoch

Writes benchmarks/results/first_hour.json (first_hour_quick.json with `--quick`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _common import git_commit, write_json  # noqa: E402

CLASSES = ("sunset", "forest", "sea")


def _smooth_noise(rng, height, width, scale):
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bilinearly."""
    from PIL import Image

    coarse = rng.uniform(0, 255, (max(2, height // scale), max(2, width // scale)))
    image = Image.fromarray(coarse.astype("uint8")).resize((width, height), Image.BILINEAR)
    return np.asarray(image, "float32") / 255.0


def photo(rng, kind: int, height: int, width: int) -> np.ndarray:
    """One photo-like RGB image `(height, width, 3)` uint8 of class `kind`."""
    yy, xx = np.mgrid[0:height, 0:width].astype("float32")
    v, u = yy / height, xx / width
    jitter = rng.uniform(0.75, 1.25, 3)
    if kind == 0:  # sunset: warm sky fading down, a bright sun disc, a dark horizon
        top, bottom = np.array([250, 150, 60]), np.array([90, 30, 90])
        image = top * (1 - v[..., None]) + bottom * v[..., None]
        cy, cx, r = rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.8), rng.uniform(0.06, 0.15)
        sun = np.exp(-(((v - cy) ** 2 + (u - cx) ** 2) / (2 * r**2)))
        image = image + 120 * sun[..., None] * np.array([1.0, 0.9, 0.5])
        horizon = rng.uniform(0.65, 0.85) + 0.03 * np.sin(u * rng.uniform(5, 15))
        image = np.where((v > horizon)[..., None], image * 0.3, image)
    elif kind == 1:  # forest: green canopy texture over dark vertical trunks
        leaves = _smooth_noise(rng, height, width, rng.integers(4, 12))
        image = np.stack([40 + 60 * leaves, 90 + 110 * leaves, 30 + 40 * leaves], -1)
        for _ in range(rng.integers(3, 9)):
            x0, w = rng.uniform(0, 1), rng.uniform(0.02, 0.07)
            trunk = (np.abs(u - x0) < w) & (v > rng.uniform(0.1, 0.5))
            image[trunk] = np.array([70, 45, 25]) * rng.uniform(0.7, 1.2)
    else:  # sea: pale sky over blue water with horizontal waves
        horizon = rng.uniform(0.25, 0.5)
        sky = np.array([170, 200, 235]) * (1 - 0.3 * v[..., None])
        freq, phase = rng.uniform(20, 60), rng.uniform(0, 6.3)
        waves = 0.5 + 0.5 * np.sin(v * freq + phase + 2 * np.sin(u * rng.uniform(3, 9)))
        water = np.stack([20 + 40 * waves, 70 + 60 * waves, 140 + 80 * waves], -1)
        image = np.where((v < horizon)[..., None], sky, water)
    image = image * jitter + rng.normal(0, 12, image.shape)
    image = image * (0.6 + 0.8 * _smooth_noise(rng, height, width, 16)[..., None])  # lighting
    return np.clip(image, 0, 255).astype("uint8")


def make_photo_folder(path, per_class: int, seed: int) -> dict:
    """Writes `path/<class>/<k>.{jpg,png}`; returns counts of sizes, formats and modes."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    sizes, formats, modes = set(), {"jpg": 0, "png": 0}, {}
    for c, name in enumerate(CLASSES):
        os.makedirs(os.path.join(path, name), exist_ok=True)
        for k in range(per_class):
            height, width = (int(s) for s in rng.integers(40, 301, 2))
            image = Image.fromarray(photo(rng, c, height, width))
            image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
            if rng.uniform() < 0.125:
                image = image.convert("L")
            if c == 0 and k == 0:
                image = image.convert("RGBA")
            ext = "png" if image.mode == "RGBA" or rng.uniform() < 0.4 else "jpg"
            image.save(os.path.join(path, name, f"{name}_{k:03d}.{ext}"))
            sizes.add((height, width))
            formats[ext] += 1
            modes[image.mode] = modes.get(image.mode, 0) + 1
    return {"images": per_class * len(CLASSES), "distinct_sizes": len(sizes),
            "formats": formats, "modes": modes}


def heldout_accuracy(model, folder) -> dict:
    """Accuracy of `model` (raw-pixel input, tlkit head) on every image of `folder`."""
    import tlkit

    paths, labels = [], []
    for c, name in enumerate(CLASSES):
        for f in sorted(os.listdir(os.path.join(folder, name))):
            paths.append(os.path.join(folder, name, f))
            labels.append(c)
    predicted = [CLASSES.index(r["class"]) for r in tlkit.predict(model, paths)]
    return {"accuracy": round(float(np.mean(np.asarray(predicted) == labels)), 4),
            "num_examples": len(paths)}


def three_lines(folder, fine_epochs=None) -> dict:
    """The README's three lines (plus `fine_epochs` with --quick); wall time and scores."""
    import tlkit

    start = time.perf_counter()
    d = tlkit.data.from_image_folder(folder)
    m = tlkit.build_model("efficientnet_lite0", d)
    r = tlkit.fine_tune(m, d, **({} if fine_epochs is None else {"fine_epochs": fine_epochs}))
    wall = time.perf_counter() - start
    return {"wall_seconds": round(wall, 1), "strategy": r.strategy.get("strategy"),
            "reason": r.strategy.get("reason"), "outcome_line": r.outcome(),
            "val_accuracy": r.val_metrics and round(r.val_metrics["accuracy"], 4),
            "test_accuracy": r.test_metrics and round(r.test_metrics["accuracy"], 4),
            "test_examples": d.num_examples("test"), "model": m}


def cli_train(folder, run, fine_epochs=None) -> dict:
    """`tlkit train` on a recipe with only the backbone and the folder, in a subprocess."""
    recipe = os.path.join(os.path.dirname(run), "photos.yaml")
    with open(recipe, "w", encoding="utf-8") as f:
        f.write(f"backbone: {{name: efficientnet_lite0}}\n"
                f"data: {{source: folder, path: {json.dumps(folder)}}}\n")
    command = [sys.executable, "-m", "tlkit.cli", "-q", "train", recipe, "--output", run]
    if fine_epochs is not None:
        command += ["--set", f"phases.fine_epochs={fine_epochs}"]
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tlkit train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(os.path.join(run, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {"wall_seconds": round(wall, 1), "recipe": open(recipe, encoding="utf-8").read(),
            "strategy": (metrics.get("strategy") or {}).get("strategy"),
            "test_accuracy": round(metrics["accuracy"], 4),
            "test_examples": metrics["num_examples"], "stderr_lines": len(done.stderr.splitlines()),
            "traceback": "Traceback" in done.stderr}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 per class, 1 fine epoch")
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--heldout-per-class", type=int, default=None)
    args = parser.parse_args(argv)
    per_class = args.per_class or (12 if args.quick else 40)
    heldout = args.heldout_per_class or (10 if args.quick else 30)
    fine_epochs = 1 if args.quick else None
    import tlkit

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TLKIT_CACHE_DIR", os.path.join(tmp, "cache"))
        folder, unseen = os.path.join(tmp, "photos"), os.path.join(tmp, "unseen")
        made = make_photo_folder(folder, per_class, seed=0)
        made_unseen = make_photo_folder(unseen, heldout, seed=1)
        load_before = os.getloadavg()
        python = three_lines(folder, fine_epochs)
        python["heldout"] = heldout_accuracy(python.pop("model"), unseen)
        cli = cli_train(folder, os.path.join(tmp, "run"), fine_epochs)
        cli["heldout"] = heldout_accuracy(tlkit.load(os.path.join(tmp, "run")), unseen)
        load_after = os.getloadavg()
    result = {
        "command": " ".join(["benchmarks/first_hour.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "commit": git_commit(),
        "folder": made, "unseen_folder": made_unseen,
        "three_lines": python, "cli": cli,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }
    path = write_json("first_hour_quick" if args.quick else "first_hour", result)
    for name, r in (("three lines", python), ("tlkit train", cli)):
        print(f"{name}: {r['wall_seconds']:.0f} s, strategy {r['strategy']}, test accuracy "
              f"{r['test_accuracy']} ({r['test_examples']} images), unseen folder "
              f"{r['heldout']['accuracy']} ({r['heldout']['num_examples']} images)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
