"""`linear_probe`: the converged linear probe alone; no `fit` (every epoch setting is ignored).

Its C is chosen on validation from `head_training.PROBE_CS` when the validation split has at
least `CHOOSE_FROM` examples, else (a tiny split, or none) it is `probe_c`, the scale-free
default LP-FT's probe uses; `result.strategy["probe"]["C_chosen_by"]` says which.
"""

from __future__ import annotations

from tlkit.training.strategies import probe
from tlkit.training.strategies.base import Strategy, StrategyChoice

CHOOSE_FROM = 100
"""`linear_probe` chooses its C on validation from this many validation examples; below, it
fits at `probe_c` (docs/benchmarks/strategies.md: how this was measured)."""


class LinearProbe(Strategy):
    """The converged linear probe on frozen features, and nothing else.

    Example:
    ```python
    result = tlkit.fine_tune(model, train, val, strategy="linear_probe")
    result.strategy["probe"]["C"]
    ```
    """

    name = "linear_probe"
    uses_probe = True

    def prepare(self, context) -> StrategyChoice:
        choice = self.choice(context)
        config = context.config
        cs = {} if config.probe_c is None else {"default_C": config.probe_c,
                                                "choose_from": CHOOSE_FROM}
        probe.fit_probe(context, choice, cs)
        choice.fit = False
        choice.log()
        return choice

    def segments(self, config, num_groups, *, batch_norm=True, cached_features=False,
                 record=None) -> list[dict]:
        segments = [probe.probe_segment(cached_features)]
        if record and record.get("probe_kept"):  # `auto` fine-tuned, then kept the probe
            segments.append(probe.all_groups_segment(config, num_groups, batch_norm, kept=True))
        return segments
