"""The recipe runner: the application on top of tlkit's library (`tlkit train / tune / ...`).

One module per verb, each entered once by one public function (its `run_lock` wrapper
`_*_locked` beside it):

- `train.py`: `train_recipe` (`tlkit train`): the training stages (head on cached features,
  then `tlkit.fine_tune`), then evaluation, reports, exports and the from-scratch baseline.
- `evaluate.py`: `evaluate_run` (`tlkit evaluate`, with `--tta`).
- `report.py`: `report_run` (`tlkit report`).
- `export.py`: `export_run` (`tlkit export`); also the exports at the end of `train`.
- `predict.py`: `predict_run` (`tlkit predict`).
- `lr_find.py`: `lr_find_recipe` (`tlkit lr-find`).
- `tune.py`: `tune_recipe` (`tlkit tune`), the recipe front end of `tlkit.tuning`.
- `scratch.py`: `scratch_baseline`, the from-scratch comparison `train` runs (`compare:`).
- `suggest.py`: `suggest_run` (`tlkit suggest`): which unlabelled examples to label next.

Shared by the verbs:

- `reopen.py`: a finished run's recipe, model and data, for the verbs that re-read a run.
- `settings.py`: `resolve_settings`, the one way every verb fills a recipe's unset settings.
- `build.py`: a recipe's model (`build`), backbone, optimizer and augmentation.
- `evaluation.py`: predict the evaluation split once, derive and write the reports.
- `records.py`: the model card and `report.html`, and the record of a run's exports.
- `run_model.py`: a finished run's model, loaded as users get it.
- `data.py`: a recipe's `data` section -> `LabeledData` (one loader per source).
- `rundir.py`: the run directory (`RunDir`: state, history, checkpoints, reports);
  `run_lock.py`: one writer per run folder.

The verbs do not import each other (import-linter checks; `train` sits above the pieces it
runs). The library (everything outside `tlkit.runner`, `tlkit.cli` and `tlkit.testing`) never
imports this package.
"""
