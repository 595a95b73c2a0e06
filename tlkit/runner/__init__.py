"""The recipe runner: the application on top of tlkit's library (`tlkit train / tune / ...`).

- `train.py`: build a model from a recipe, the training stages (head on cached features, then
  `tlkit.fine_tune`), evaluate / report / export a run, the from-scratch baseline, lr-find.
- `tune.py`: `tune_recipe`, the recipe front end of `tlkit.tuning`.
- `data.py`: a recipe's `data` section -> `LabeledData` (one loader per source).
- `rundir.py`: the run directory (`RunDir`: state, history, checkpoints, reports).

The library (everything outside `tlkit.runner`, `tlkit.cli` and `tlkit.testing`) never imports
this package.
"""
