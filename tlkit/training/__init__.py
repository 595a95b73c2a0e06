"""Training mechanics of the library: `fine_tune` and the pieces it is composed of.

No module here is named like a public top-level function of `tlkit` (`tlkit.fine_tune` is the
function; its implementation lives in `tlkit.training.fine_tuning`).
"""
