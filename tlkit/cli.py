"""The `tlkit` command line.

```
tlkit train RECIPE [--set key=value ...] [--output DIR] [--force]
tlkit evaluate RUN [--tta] [--tta-crops FRACTION]
tlkit report RUN
tlkit predict RUN INPUT [INPUT ...] [--top K] [--json]
tlkit suggest RUN --pool DIR [-n 50] [--method typiclust] [--output DIR]
tlkit lr-find RECIPE [--set key=value ...] [--output DIR]
tlkit tune RECIPE [--set key=value ...] [--output DIR]
tlkit audit DATA [--set key=value ...] [--json]
tlkit export RUN --format {keras,savedmodel,tflite,tflite-dynamic,hub,savedmodel-int8,tflite-int8,onnx} [...] [--output DIR]
tlkit bench [NAME ...] [--list] [--full]
tlkit init [NAME] [--output FILE] [--force] [--list]
tlkit --version
```

Exit codes: 0 on success; 1 with one line `tlkit: error: <reason>` for bad input (missing
file, invalid recipe, unknown key, missing feature); 2 for bad command-line usage (argparse);
130 when interrupted, 143 on SIGTERM (clean-up done; re-run the same `train` command to
resume). `--debug` shows tracebacks.
Heavy modules (TensorFlow, Keras) are imported inside the subcommands, not at parse time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys

from tlkit.config import EXPORT_FORMATS


class CommandError(Exception):
    """Bad input to a subcommand, reported as one line."""


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread so that clean-up runs (temporary files
    removed, the run lock released, a new run's records settled) before exit code 143."""


@contextlib.contextmanager
def _sigterm_raises():
    """Within the block, SIGTERM raises `Terminated` (main thread only; restored after)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _verbose():
    """Keras' progress verbosity: redrawn bars on a terminal, one plain line per epoch in a
    file or pipe (no ANSI codes there)."""
    from tlkit._progress import fit_verbose

    return fit_verbose("auto")


def _recipe(args):
    from tlkit.recipes import load_recipe

    return load_recipe(args.recipe, overrides=args.set)


def _open_run(path):
    """The run folder's errors (not found, not finished) before TensorFlow is imported."""
    from tlkit.runner.rundir import open_run

    return open_run(path)


def _check_data(recipe, output=None, force=False):
    """A missing data path or backbone, before TensorFlow is imported (not for a finished run
    of this very recipe, which `tlkit train` returns as it is)."""
    from tlkit.recipes import dump_recipe, preflight
    from tlkit.runner.rundir import RunDir

    run = RunDir(output or recipe.output.dir or os.path.join("runs", recipe.name))
    if force or not run.finished_with(dump_recipe(recipe)):
        preflight.check_ready(recipe)


# -- subcommands -----------------------------------------------------------------------------------
def _train(args) -> int:
    recipe = _recipe(args)  # recipe errors answer before TensorFlow is imported
    _check_data(recipe, args.output, args.force)
    from tlkit.runner.train import train_recipe

    run_dir = train_recipe(recipe, output=args.output, force=args.force, verbose=_verbose())
    _print_results(run_dir)
    return 0


def _print_results(run_dir):
    from tlkit.runner.rundir import RunDir

    run = RunDir(run_dir)
    metrics = run.read_json("metrics.json", {})
    print(f"run: {run.path}")
    if metrics:
        print(
            f"{metrics.get('split', 'test')} accuracy {metrics['accuracy']:.4f}, macro F1 "
            f"{metrics['macro_f1']:.4f} ({metrics['num_examples']} examples)"
        )
        scratch = metrics.get("scratch") or {}
        if "accuracy" in scratch:
            print(
                f"pretrained backbone {metrics['accuracy']:.4f} vs same architecture from scratch "
                f"{scratch['accuracy']:.4f} ({scratch['epochs']} epochs, {scratch['seconds']:.0f} s)"
            )
        for warning in metrics.get("warnings", []):
            print(f"warning: {warning}")
    for name in (
        "metrics.json",
        "model.keras",
        "reports/model_card.md",
        "reports/confusion_matrix.png",
        "reports/learning_curves.png",
        "export",
    ):
        if os.path.exists(run.file(name)):
            print(f"  {run.file(name)}")
    if os.path.exists(run.file("report.html")):
        print(f"report: {run.file('report.html')}")


def _evaluate(args) -> int:
    _open_run(args.run)
    from tlkit.reports import format_report
    from tlkit.runner.evaluate import evaluate_run

    tta = None
    if args.tta or args.tta_crops is not None:
        if args.tta_crops is not None and not 0.0 < args.tta_crops < 1.0:
            raise CommandError(f"--tta-crops: expected a fraction in (0, 1), got {args.tta_crops}")
        tta = {"flip": True, "crops": args.tta_crops}
    metrics = evaluate_run(args.run, verbose=_verbose(), tta=tta)
    print(format_report(metrics))
    if tta is not None:
        record = metrics["tta"]
        print(f"with test-time augmentation ({record['views']} views): accuracy "
              f"{record['accuracy']:.4f}, macro F1 {record['macro_f1']:.4f} "
              f"({os.path.join(args.run, 'metrics_tta.json')})")
    print(f"reports: {os.path.join(args.run, 'reports')}")
    return 0


def _report(args) -> int:
    _open_run(args.run)
    from tlkit.runner.report import report_run

    print(f"report: {report_run(args.run, verbose=0)}")
    return 0


def _predict(args) -> int:
    _open_run(args.run)
    from tlkit.runner.predict import predict_run

    if args.top < 1:
        raise CommandError(f"--top: expected an int >= 1 (classes to show per input), got "
                           f"{args.top}")
    results = predict_run(args.run, args.inputs, top=args.top)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
        print(f"{r['input']}\t{ranked}")
    return 0


def _suggest(args) -> int:
    _open_run(args.run)
    from tlkit.runner.suggest import suggest_run

    result = suggest_run(args.run, args.pool, n=args.n, method=args.method, output=args.output,
                         seed=args.seed)
    print(f"{len(result['selection'])} file(s) to label next ({args.method}): {result['csv']}")
    if result["sheet"]:
        print(f"contact sheet: {result['sheet']}")
    return 0


def _lr_find(args) -> int:
    recipe = _recipe(args)
    _check_data(recipe, force=True)
    from tlkit.runner.lr_find import lr_find_recipe

    result = lr_find_recipe(recipe, output=args.output, verbose=_verbose())
    print(f"suggested learning rate: {result.suggestion:.3g}")
    if result.plot_path:
        print(f"plot: {result.plot_path}")
    print(f"to use it: --set optimizer.lr={result.suggestion:.3g} (or optimizer.lr in the recipe)")
    return 0


def _tune(args) -> int:
    recipe = _recipe(args)
    if recipe.tune is None:
        raise CommandError(f"{args.recipe}: no 'tune' section (search space) in the recipe")
    from tlkit.recipes import preflight

    preflight.check_ready(recipe)
    from tlkit.runner.tune import tune_recipe

    result = tune_recipe(recipe, output=args.output, overwrite=args.overwrite, verbose=_verbose())
    print(f"best: {result.best_hyperparameters}")
    for name, path in sorted(result.paths.items()):
        print(f"  {name}: {path}")
    return 0


def _audit(args) -> int:
    data = args.data
    if data.endswith((".yaml", ".yml")):
        from tlkit.recipes import load_recipe

        recipe = load_recipe(data, overrides=args.set, required=())
        from tlkit.recipes import preflight

        preflight.check_ready(recipe, backbone=False)
        from tlkit.runner.data import load_data

        target = load_data(recipe.data, recipe.seed)
    elif os.path.isdir(data):
        target = data
    elif os.path.exists(data):
        raise CommandError(f"{data}: expected a recipe (.yaml) or an image folder")
    else:
        raise FileNotFoundError(f"data not found: {data}")
    import tlkit.data

    report = tlkit.data.audit(target, progress=not args.json)  # keep --json output parseable
    print(report.to_json() if args.json else report.to_text())
    return 0


def _list(args) -> int:
    from tlkit import registry

    tables = {"backbones": registry.BACKBONES, "sources": registry.DATA_SOURCES}
    for what, table in tables.items():
        if args.what not in (None, what):
            continue
        print(f"{what}:")
        for entry in table:
            needs = f" (needs {', '.join(entry.needs)})" if entry.needs else ""
            print(f"  {entry.name}: {entry.description}{needs}")
    return 0


def _export(args) -> int:
    _open_run(args.run)
    from tlkit.runner.export import export_run

    results = export_run(args.run, args.format, output=args.output)
    for fmt, info in results.items():
        line = info.get("path") or f"skipped ({info.get('skipped')})"
        parity = info.get("parity")
        if parity:
            line += (
                f"  parity: max |diff| {parity['max_abs_diff']:.2e}, top-1 agreement "
                f"{parity['top1_agreement']:.3f} on {parity['num_examples']} inputs"
            )
        print(f"{fmt}: {line}")
        if info.get("warning"):
            print(f"warning: {info['warning']}")
    return 0


def _default_benchmarks() -> str:
    """`./benchmarks` where it exists, else the `benchmarks/` of the checkout tlkit runs from
    (so `tlkit bench` works from any directory of an editable install)."""
    if os.path.isdir("benchmarks"):
        return "benchmarks"
    import tlkit

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tlkit.__file__))),
                        "benchmarks")


def _bench(args) -> int:
    folder = args.dir or _default_benchmarks()
    if args.dir is None and not os.path.isdir(folder):
        raise CommandError(
            "tlkit bench runs the benchmark scripts of a tlkit source checkout (its benchmarks/ "
            "folder), which an installed wheel does not carry; run it inside a checkout, or "
            "pass --dir FOLDER"
        )
    scripts = []
    if os.path.isdir(folder):
        scripts = sorted(
            f[:-3]
            for f in os.listdir(folder)
            if f.endswith(".py") and not f.startswith("_") and f != "run_all.py"
        )
    if not scripts:
        raise CommandError(f"no benchmark scripts (*.py) in {folder}")
    if args.list:
        print("\n".join(scripts))
        return 0
    unknown = [n for n in args.names if n not in scripts]
    if unknown:
        raise CommandError(f"unknown benchmark {unknown[0]!r} (available: {', '.join(scripts)})")
    runner = os.path.join(folder, "run_all.py")
    if os.path.exists(runner):  # the folder's own runner: --quick flags, summary JSON
        command = [sys.executable, runner] + (["--only", *args.names] if args.names else [])
        if subprocess.call(command + (["--full"] if args.full else [])):
            raise CommandError("benchmark(s) failed; see the summary above")
        return 0
    failed = []
    for name in args.names or scripts:
        print(f"== {name}", flush=True)
        if subprocess.call([sys.executable, os.path.join(folder, f"{name}.py")]):
            failed.append(name)
    if failed:
        raise CommandError(f"benchmark(s) failed: {', '.join(failed)}")
    return 0


def _version_line() -> str:
    """`tlkit X.Y.Z` for `tlkit --version` (the installed distribution's metadata)."""
    import tlkit

    return f"tlkit {tlkit.__version__}"


def _init(args) -> int:
    from tlkit.recipes import shipped

    recipes = shipped.shipped_recipes()
    if args.list:
        for name, path in recipes.items():
            print(f"{name}: {shipped.describe(path)}")
        return 0
    path = shipped.write_starter(args.name, output=args.output, force=args.force)
    print(f"wrote {path} (from the shipped recipe {args.name!r}); train it with: "
          f"tlkit train {path}")
    others = [n for n in recipes if n != args.name]
    print(f"other starters (tlkit init NAME; tlkit init --list describes them): {', '.join(others)}")
    return 0


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `tlkit` (no heavy imports)."""
    parser = argparse.ArgumentParser(
        prog="tlkit", description="Transfer learning and fine-tuning for Keras 3 / TensorFlow."
    )
    parser.add_argument("--version", action="version", version=_version_line())
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also debug lines (e.g. the trainable-parameter table per group)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    def overrides(p):
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a recipe value, e.g. --set optimizer.lr=3e-4 (repeatable)",
        )

    p = add("train", _train, "train a recipe into a run folder (resumes an interrupted run)")
    p.add_argument("recipe", help="recipe YAML file")
    overrides(p)
    p.add_argument("--output", help="run folder (default: output.dir or runs/<recipe name>)")
    p.add_argument(
        "--force", action="store_true", help="retrain from scratch, replacing the run folder"
    )

    p = add("evaluate", _evaluate, "re-evaluate a run and rewrite its reports")
    p.add_argument("run", help="run folder")
    p.add_argument("--tta", action="store_true",
                   help="also evaluate with test-time augmentation (image and its mirror "
                   "averaged); metrics go to RUN/metrics_tta.json")
    p.add_argument("--tta-crops", type=float, metavar="FRACTION",
                   help="with --tta, also average the four corner and the centre crops of this "
                   "fraction of the image (e.g. 0.9)")

    p = add("report", _report, "regenerate a run's report.html (one self-contained page)")
    p.add_argument("run", help="run folder")

    p = add("predict", _predict, "classify image files / folders or texts with a run's model")
    p.add_argument("run", help="run folder")
    p.add_argument("inputs", nargs="+", help="image files or folders (image models), or texts")
    p.add_argument("--top", type=int, default=1, help="classes to show per input")
    p.add_argument("--json", action="store_true", help="print JSON")

    from tlkit.active import DEFAULT_METHOD, METHODS  # NumPy only: no TensorFlow at parse time

    p = add("suggest", _suggest, "choose which unlabelled files to label next with a run's model")
    p.add_argument("run", help="run folder")
    p.add_argument("--pool", required=True, help="folder of unlabelled images (or .txt texts)")
    p.add_argument("-n", type=int, default=50, help="files to pick (default 50)")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS),
                   help=f"selection method (default {DEFAULT_METHOD})")
    p.add_argument("--seed", type=int, default=0, help="seed of random choices")
    p.add_argument("--output", help="folder for to_label.csv / to_label.png (default: RUN)")

    p = add("lr-find", _lr_find, "learning-rate range test on a recipe's model")
    p.add_argument("recipe")
    overrides(p)
    p.add_argument("--output", help="folder for lr_find.png")

    p = add("tune", _tune, "hyperparameter search over the recipe's tune.space")
    p.add_argument("recipe")
    overrides(p)
    p.add_argument("--output", help="folder for the search")
    p.add_argument("--overwrite", action="store_true",
                   help="start the search afresh (default: resume; a changed space is an error)")

    p = add("audit", _audit, "audit a data set (a recipe's data, or an image folder)")
    p.add_argument("data", help="recipe YAML or image folder")
    overrides(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("export", _export, "export a run's model")
    p.add_argument("run", help="run folder")
    p.add_argument(
        "--format",
        action="append",
        required=True,
        choices=EXPORT_FORMATS,
        help="export format (repeatable)",
    )
    p.add_argument("--output", help="folder (default: RUN/export)")

    p = add("list", _list, "list the registered backbones and data sources")
    p.add_argument("what", nargs="?", choices=("backbones", "sources"), help="one table only")

    p = add("bench", _bench, "run the benchmark scripts in benchmarks/")
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--dir", default=None,
                   help="benchmark folder (default: ./benchmarks, else the checkout's benchmarks/)")
    p.add_argument("--list", action="store_true", help="list benchmarks")
    p.add_argument("--full", action="store_true", help="full-size runs (run_all.py's --full)")

    p = add("init", _init, "write a starter recipe from one of the shipped recipes")
    p.add_argument("name", nargs="?", default="smoke",
                   help="shipped recipe to start from (default: smoke, which runs anywhere in "
                   "seconds); tlkit init --list shows them all")
    p.add_argument("--output", help="file to write (default: NAME.yaml here)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--list", action="store_true", help="list the shipped recipes")
    return parser


def _expected_errors() -> tuple:
    """Error types that mean bad input: reported as one line (no traceback)."""
    expected = (CommandError, ValueError, OSError, ImportError)
    distribute = sys.modules.get("tlkit.distribute")  # loaded only by commands that use it
    return expected + ((distribute.DistributionError,) if distribute is not None else ())


def _disk_full(err) -> bool:
    """A full disk reported by TensorFlow (`ResourceExhaustedError`, not an `OSError`)."""
    return "No space left on device" in str(err)


def _one_line(err) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 600 else text[:597] + "..."


@contextlib.contextmanager
def _cli_logging(quiet: bool, verbose: bool = False):
    """tlkit's log lines on stderr, once, for the duration of a command; restored afterwards
    (so `main()` called in-process, e.g. from tests or a notebook, leaves logging as it was)."""
    logger = logging.getLogger("tlkit")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)  # everything reaches a run's train.log; the console filters
    logger.propagate = False  # the CLI prints tlkit's messages once, whatever root logs
    try:
        yield
    finally:
        logger.handlers, logger.level, logger.propagate = saved


def _native_log_filter(verbose: bool):
    """TensorFlow's C++ log lines filtered off stderr (`tlkit._native_log`), unless `--verbose`
    or `sys.stderr` is not the process's own (`main()` called in-process, e.g. under pytest)."""
    if verbose or sys.stderr is not sys.__stderr__:
        return contextlib.nullcontext()
    from tlkit._native_log import filtered_stderr

    return filtered_stderr()


def main(argv=None) -> int:
    """Entry point of the `tlkit` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:  # before TensorFlow's first import (the subcommands import it)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _sigterm_raises(), _native_log_filter(args.verbose), _cli_logging(args.quiet,
                                                                                args.verbose):
            return args.func(args)
    except Terminated:
        print("tlkit: terminated (SIGTERM); run the same command again to resume",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("tlkit: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug or not (isinstance(err, _expected_errors()) or _disk_full(err)):
            raise
        print(f"tlkit: error: {_one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
