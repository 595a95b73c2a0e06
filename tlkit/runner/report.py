"""`tlkit report`: regenerate a finished run's `report.html` (reusing its saved predictions)."""

from __future__ import annotations

from tlkit.runner.evaluation import interpret, write_metrics_reports
from tlkit.runner.records import write_report
from tlkit.runner.reopen import reopen
from tlkit.runner.run_lock import run_lock
from tlkit.runner.rundir import RunError, open_run


def report_run(path, verbose=0) -> str:
    """Regenerates a finished run's `report.html` (`tlkit report`); returns its path.

    Raises:
        FileNotFoundError: no run folder, or no trained model in it.
        RunError: the run is not finished.
        ValueError: no test / validation split, or an empty one.
    """
    with run_lock(path, "report"):
        return _report_locked(path, verbose)


def _report_locked(path, verbose) -> str:
    run = open_run(path)
    if not run.complete:
        raise RunError(
            f"{run.path} is not a finished run (state.json is not complete): finish it with "
            "tlkit train first"
        )
    recipe, model, data = reopen(run)
    temperature = run.read_json("calibration.json", {}).get("temperature")
    found = interpret(recipe, run, model, data, verbose, temperature=temperature, reuse=True)
    metrics = {**run.read_json("metrics.json", {}), **write_metrics_reports(run, data, found)}
    return write_report(recipe, run, data, metrics, found)
