"""`gradual`: the head phase, then the `unfreeze` schedule (`gradual`, `all` or `table`) with
every other setting as given."""

from __future__ import annotations

from tlkit.training.strategies.base import Strategy, StrategyChoice, bn_label, head_label, segment
from tlkit.unfreeze.schedule import UnfreezeSchedule


class Gradual(Strategy):
    """The head phase, then the configured unfreeze schedule.

    Example:
    ```python
    tlkit.fine_tune(model, train, val, strategy="gradual", unfreeze="gradual", every=1)
    ```
    """

    name = "gradual"

    def prepare(self, context) -> StrategyChoice:
        choice = self.choice(context)
        choice.config = self.fit_config(context.config)
        choice.log()
        return choice

    def fit_config(self, config):
        """The config the `fit` runs with."""
        return config

    def segments(self, config, num_groups, *, batch_norm=True, cached_features=False,
                 record=None) -> list[dict]:
        config = self.fit_config(config)
        head, total = config.head_epochs, config.head_epochs + config.fine_epochs
        schedule = UnfreezeSchedule.from_fine_tune_config(config, num_groups)
        points = schedule.change_points(total, num_groups)
        segments = []
        for i, (start, n) in enumerate(points):
            end = points[i + 1][0] if i + 1 < len(points) else total
            if start < head:
                segments.append(segment(i, start, end, head_label(cached_features), "head", n,
                                        config.resolved_head_lr))
                continue
            short = "all" if n >= num_groups else f"top {n}"
            label = ("all groups" if n >= num_groups else f"top {n} group{'s' * (n != 1)}")
            segments.append(segment(i, start, end, label + " + head" + bn_label(config, batch_norm),
                                    short, n, config.lr))
        return segments
