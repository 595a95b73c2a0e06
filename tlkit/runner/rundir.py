"""The run directory: everything one training run writes, in one folder.

```
runs/<recipe name>/
  recipe.yaml          the resolved recipe (after --set overrides)
  state.json           which stages are done; "complete" at the end
  checkpoints/         keras BackupAndRestore backups per stage + weights after each stage
  logs/                TensorBoard
  history.json         per-epoch metrics of every stage, with the stage and phase names
  model.keras          the trained model (reloads with keras.models.load_model, safe mode)
  class_names.json
  metrics.json         test (or validation) metrics
  train.log            tlkit's log lines of every attempt, plain text (under the CLI: DEBUG
                       and up, e.g. the trainable-parameter table of each unfreezing step)
  reports/             classification report, confusion matrix, learning curves, model card
  export/              exported models (savedmodel/, model.tflite, hub/, parity.json)
  .tlkit-run           the marker: this folder is a run tlkit created
```

Files tlkit writes itself are written atomically (temporary file + `os.replace`), so an
interrupted run never leaves a half-written `state.json` or `model.keras`. A folder that holds a
run is never deleted or overwritten unless the caller asks (`force=True`), and `force=True` only
ever replaces a folder tlkit created as a run: one with the `.tlkit-run` marker, or (runs from
before the marker) one whose `recipe.yaml` and `state.json` with its `stages_done` list are both
there; such a run gets the marker when it is resumed. Anything else is refused, untouched.

Records are read through one validated reader (`RunDir.read_json`, `RECORDS`): a damaged file
(not JSON, wrong shape, a folder) is one `RecordError` line naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil

from tlkit._io import (
    RecordError,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_json,
    temp_name,
)
from tlkit.saving import calibration_problem

__all__ = ["RECIPE_FILE", "RECORDS", "RUN_MARKER", "STATE_FILE", "RecordError", "RunDir",
           "RunError", "atomic_path", "atomic_write_json", "atomic_write_text", "open_run",
           "read_json", "temp_name"]

logger = logging.getLogger("tlkit")

STATE_FILE = "state.json"
LOG_FILE = "train.log"
RECIPE_FILE = "recipe.yaml"
RUN_MARKER = ".tlkit-run"


def _mapping(data):
    return None if isinstance(data, dict) else "a JSON object"


def _state(data):
    if not isinstance(data, dict):
        return "a JSON object with 'stages_done'"
    done = data.get("stages_done", [])
    if not isinstance(done, list) or not all(isinstance(s, str) for s in done):
        return "'stages_done' as a list of stage names"
    for key, kind in (("segments", list), ("strategy", dict), ("stage_seconds", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            return f"{key!r} as a JSON {'list' if kind is list else 'object'}"
    return None


def _names(data):
    ok = isinstance(data, list) and data and all(isinstance(n, str) for n in data)
    return None if ok else "a non-empty JSON list of class names"


def _history(data):
    ok = isinstance(data, list) and all(
        isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in data)
    return None if ok else "a JSON list of epoch records ({'epoch': int, ...})"


def _exports(data):
    ok = isinstance(data, dict) and all(isinstance(v, dict) for v in data.values())
    return None if ok else "a JSON object {format: {path: ...}}"


RETRAIN = "retrain the run: tlkit train RECIPE --output RUN --force"
RECORDS = {
    STATE_FILE: (_state, "the run's progress is unknown; " + RETRAIN),
    "metrics.json": (_mapping, "rewrite it with tlkit evaluate RUN"),
    "class_names.json": (_names, "restore it (the class names in the model's order) or " + RETRAIN),
    "calibration.json": (calibration_problem, "restore it, or delete it to serve the model without "
                         "temperature scaling"),
    "history.json": (_history, "delete it (the learning curves lose the epochs it held) and run "
                     "the command again"),
    os.path.join("export", "export.json"): (_exports, "delete it and export again (tlkit export "
                                            "RUN --format ...)"),
    "wise_ft.json": (_mapping, "delete it and " + RETRAIN),
    "scratch_baseline.json": (_mapping, "delete it and run tlkit train again (the comparison "
                              "is redone)"),
    os.path.join("reports", "data_audit.json"): (_mapping, "delete it and run tlkit train or "
                                                 "tlkit evaluate again"),
}
"""Every JSON record of a run: `{file: (shape check, what to do when it is damaged)}`."""


class RunError(ValueError):
    """A run folder that cannot be used as asked (e.g. it holds a different recipe)."""


class RunDir:
    """Paths and state of one run folder.

    Args:
        path: the folder (created by `prepare`).

    Example:
    ```python
    run = RunDir("runs/smoke")
    run.prepare(recipe_yaml)          # new run, or resume the same recipe
    if run.stage_done("head"): ...
    run.mark_stage_done("head")
    ```
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.replaced = None  # set by `prepare(force=True)`: where the replaced run waits

    def __repr__(self):
        return f"RunDir({self.path!r})"

    # -- paths -----------------------------------------------------------------------------------
    def file(self, *parts) -> str:
        return os.path.join(self.path, *parts)

    @property
    def recipe_path(self) -> str:
        return self.file(RECIPE_FILE)

    @property
    def model_path(self) -> str:
        return self.file("model.keras")

    @property
    def checkpoints(self) -> str:
        return self.file("checkpoints")

    @property
    def logs(self) -> str:
        return self.file("logs")

    @property
    def reports(self) -> str:
        return self.file("reports")

    @property
    def export_dir(self) -> str:
        return self.file("export")

    def backup_dir(self, stage: str) -> str:
        """The `BackupAndRestore` folder of `stage` (one per `fit` call)."""
        return os.path.join(self.checkpoints, f"backup_{stage}")

    def stage_weights(self, stage: str) -> str:
        """Model weights saved when `stage` finished."""
        return os.path.join(self.checkpoints, f"{stage}.weights.h5")

    # -- state -----------------------------------------------------------------------------------
    @property
    def state(self) -> dict:
        state = self.read_json(STATE_FILE, default={"stages_done": [], "complete": False})
        state.setdefault("stages_done", [])
        return state

    def _write_state(self, state):
        atomic_write_json(self.file(STATE_FILE), state)

    def update_state(self, **items):
        """Adds `items` to `state.json` (e.g. the training segments, for reports)."""
        state = self.state
        state.update(items)
        self._write_state(state)

    @property
    def exists(self) -> bool:
        return os.path.exists(self.recipe_path) or os.path.exists(self.file(STATE_FILE))

    @property
    def is_run(self) -> bool:
        """Whether tlkit created this folder as a run: its `.tlkit-run` marker, or (runs from
        before the marker) `recipe.yaml` beside a `state.json` object with a `stages_done`
        list. Only such a folder may be replaced (`prepare(force=True)`)."""
        if os.path.isfile(self.file(RUN_MARKER)):
            return True
        if not os.path.isfile(self.recipe_path):
            return False
        try:
            state = read_json(self.file(STATE_FILE))
        except RecordError:
            return False
        return isinstance(state, dict) and isinstance(state.get("stages_done"), list)

    def _mark(self):
        atomic_write_json(self.file(RUN_MARKER), {"tlkit_run": 1})

    @property
    def complete(self) -> bool:
        return bool(self.state.get("complete")) and os.path.exists(self.model_path)

    def stage_done(self, stage: str) -> bool:
        return stage in self.state.get("stages_done", [])

    @property
    def last_stage_done(self) -> str | None:
        done = self.state.get("stages_done", [])
        return done[-1] if done else None

    def mark_stage_done(self, stage: str):
        state = self.state
        if stage not in state["stages_done"]:
            state["stages_done"].append(stage)
        self._write_state(state)

    def mark_complete(self, **info):
        state = self.state
        state["complete"] = True
        state.update(info)
        self._write_state(state)

    # -- lifecycle -------------------------------------------------------------------------------
    def prepare(self, recipe_yaml: str, force: bool = False) -> str:
        """Creates the folder for a new run, or checks it for resuming.

        Returns:
            `"new"`, `"resume"` (same recipe, unfinished) or `"complete"` (same recipe, done).

        Raises:
            RunError: the folder holds a run of a *different* recipe, or files that are not a
                run; nothing is deleted unless `force=True`.
        """
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunError(f"{self.path} is a file, not a run folder; choose another --output")
        if os.path.exists(self.path) and os.listdir(self.path) and not self.is_run:
            raise RunError(
                f"{self.path} exists and is not a tlkit run folder (no {RUN_MARKER} marker); "
                "tlkit never replaces a folder it did not create, even with --force: choose "
                "another --output, or move its files away yourself"
            )
        if force and os.path.exists(self.path) and os.listdir(self.path):
            # Moved aside, not deleted: `settle` removes it once the new run has a checkpoint
            # and puts it back if the new run fails before that.
            self.replaced = temp_name(self.path)
            os.replace(self.path, self.replaced)
        if os.path.exists(self.path) and os.listdir(self.path):
            self._mark()  # a run from before the marker gets one
            with open(self.recipe_path, encoding="utf-8") as f:
                previous = f.read()
            if self.failed and not self.has_checkpoint:
                # Nothing to resume or keep but its audit: start again (with this recipe).
                logger.info("%s: the last attempt failed (%s); starting again", self.path,
                            self.failed)
                atomic_write_text(self.recipe_path, recipe_yaml)
                self._write_state({"stages_done": [], "complete": False})
                return "new"
            if previous != recipe_yaml:
                raise RunError(
                    f"{self.path} holds a run of a different recipe ({RECIPE_FILE} differs); "
                    "pass --force to retrain from scratch there, or choose another --output"
                )
            return "complete" if self.complete else "resume"
        os.makedirs(self.path, exist_ok=True)
        self._mark()
        atomic_write_text(self.recipe_path, recipe_yaml)
        self._write_state({"stages_done": [], "complete": False})
        return "new"

    @property
    def has_checkpoint(self) -> bool:
        """Whether training has saved anything to resume from (a finished stage or a backup)."""
        if self.state.get("stages_done"):
            return True
        backups = glob.glob(os.path.join(self.checkpoints, "backup_*", "**", "*"), recursive=True)
        return any(os.path.isfile(f) for f in backups)

    def settle(self, error: BaseException | None = None) -> None:
        """After a run stopped with `error` (or finished, `None`): keeps the records that matter.

        A run that failed before its first checkpoint is marked failed in `state.json` (its
        audit stays; `open_run` and the next `prepare` say so), or, when it replaced a run with
        `force=True`, removed and the replaced run put back. The replaced run is deleted only
        once the new run has a checkpoint.
        """
        replaced = self.replaced
        if error is not None and not self.has_checkpoint:
            if replaced:
                shutil.rmtree(self.path, ignore_errors=True)
                os.replace(replaced, self.path)
            else:
                reason = " ".join(str(error).split())[:300] or type(error).__name__
                self.update_state(failed=f"{type(error).__name__}: {reason}")
        elif replaced:
            shutil.rmtree(replaced, ignore_errors=True)
        self.replaced = None

    @property
    def failed(self) -> str | None:
        """Why the run failed before its first checkpoint (`None` when it did not)."""
        return self.state.get("failed")

    # -- results ---------------------------------------------------------------------------------
    def write_json(self, name: str, data) -> str:
        return atomic_write_json(self.file(name), data)

    def read_json(self, name: str, default=None):
        """The run's JSON record `name` (e.g. `"metrics.json"`), or `default` when it does not
        exist; a record listed in `RECORDS` is checked for its shape.

        Raises:
            RecordError: the file is damaged (one line: the file, the problem, what to do).
        """
        expect, fix = RECORDS.get(os.path.normpath(name), (None, None))
        return read_json(self.file(name), default, expect=expect,
                         fix=fix and fix.replace("RUN", self.path))

    def history(self) -> list[dict]:
        """Per-epoch records `{epoch, stage, loss, val_loss, ...}` of the run so far."""
        return self.read_json("history.json", default=[])

    def add_history(self, records: list[dict]):
        """Adds epoch records; a record replaces an earlier one of the same epoch (resumes)."""
        keep = {r["epoch"]: r for r in self.history()}
        for record in records:
            keep[record["epoch"]] = record
        self.write_json("history.json", [keep[e] for e in sorted(keep)])

    def class_names(self, num_classes: int | None = None) -> list[str]:
        """The run's class names; with `num_classes` (the model's outputs), checked against it."""
        names = self.read_json("class_names.json")
        if names is None:
            raise FileNotFoundError(f"{self.file('class_names.json')} not found: is it a run?")
        if num_classes is not None and len(names) != num_classes:
            raise RecordError(
                f"{self.file('class_names.json')}: damaged record: {len(names)} class names for "
                f"a model with {num_classes} outputs; "
                + RECORDS["class_names.json"][1].replace("RUN", self.path))
        return names

    def finished_with(self, recipe_yaml: str) -> bool:
        """Whether this folder holds a finished run of exactly this recipe (`tlkit train`
        returns it as it is, so its data and backbone need not be checked again)."""
        if not self.complete or not os.path.exists(self.recipe_path):
            return False
        try:
            with open(self.recipe_path, encoding="utf-8") as f:
                return f.read() == recipe_yaml
        except (OSError, UnicodeDecodeError):
            return False  # a damaged copy: `prepare` names it


def open_run(path) -> RunDir:
    """An existing, completed run folder (for `evaluate`, `predict`, `export`)."""
    run = RunDir(path)
    if not os.path.isdir(run.path):
        raise FileNotFoundError(f"run folder not found: {run.path}")
    if not os.path.exists(run.model_path) and run.failed:
        raise RunError(
            f"{run.path}: training failed before its first checkpoint ({run.failed}); fix that "
            "and run tlkit train again"
        )
    if not os.path.exists(run.model_path):
        raise FileNotFoundError(
            f"{run.path} has no model.keras: not a finished tlkit run (train it with tlkit train)"
        )
    return run


@contextlib.contextmanager
def run_log(run: RunDir):
    """Within the block, the `tlkit` logger's records also go to the run's `train.log` (appended:
    a resumed run keeps the earlier attempts' lines), whatever level reaches the logger (the CLI
    lets DEBUG through and filters its console itself). Plain text: tlkit logs no ANSI codes."""
    tlkit_logger = logging.getLogger("tlkit")
    handler = logging.FileHandler(run.file(LOG_FILE), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    tlkit_logger.addHandler(handler)
    try:
        yield
    finally:
        tlkit_logger.removeHandler(handler)
        handler.close()
