"""Progress output that stays plain text where no terminal reads it.

Keras' `Progbar` (used by `fit(verbose=1)` and by tlkit's own bars) redraws a bar with ANSI
colour codes whenever `verbose=1`, terminal or not (it treats any POSIX system as a dynamic
display), so a log file of `tlkit train ... > train.log` fills with `\\x1b[1m`. `verbose=2` prints
one plain line when the work is done. Both choices are made here, once.
"""

from __future__ import annotations

import sys


def interactive() -> bool:
    """Whether a terminal or a notebook shows stdout (where Keras prints progress)."""
    tty = bool(getattr(sys.stdout, "isatty", None) and sys.stdout.isatty())
    return tty or "ipykernel" in sys.modules


def fit_verbose(verbose="auto"):
    """`verbose` for `model.fit` / `predict`: `"auto"` becomes 1 (a redrawn bar) on a terminal
    and 2 (one plain line per epoch) otherwise; explicit values are kept."""
    if verbose == "auto":
        return 1 if interactive() else 2
    return verbose


def progbar(target, progress: bool = True, unit_name: str = "step"):
    """A `keras.utils.Progbar`: silent without `progress`, redrawn on a terminal, else one plain
    line at the end."""
    import keras

    verbose = 0 if not progress else 1 if interactive() else 2
    return keras.utils.Progbar(target, verbose=verbose, unit_name=unit_name)
