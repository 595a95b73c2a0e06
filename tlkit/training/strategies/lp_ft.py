"""`lp_ft` (Kumar et al., 2022): a converged linear probe initialises the head, its logits
divided by `probe_temperature` (same predictions, more training loss left: the "energy" that
adapts the features, Ren et al., 2023); then every group fine-tunes, with no head epochs
(`head_epochs`, `head_lr` and the unfreeze settings are ignored)."""

from __future__ import annotations

from tlkit.training.strategies import probe
from tlkit.training.strategies.base import Strategy, StrategyChoice


class LpFt(Strategy):
    """Linear probe, then fine-tune every group.

    Example:
    ```python
    tlkit.fine_tune(model, train, val, strategy="lp_ft", probe_c=4.0, fine_epochs=3)
    ```
    """

    name = "lp_ft"
    uses_probe = True

    def prepare(self, context) -> StrategyChoice:
        choice = self.choice(context)
        probe.fit_probe(context, choice, probe.config_cs(context.config))
        self.start_fine_tuning(context.model, choice)
        choice.log()
        return choice

    @staticmethod
    def start_fine_tuning(model, choice) -> None:
        """`choice` fine-tunes every group from the probe's softened head."""
        config = choice.config
        choice.config = config.replace(head_epochs=0, fine_epochs=max(config.fine_epochs, 1),
                                       unfreeze="all")
        probe.soften(model, choice)

    def segments(self, config, num_groups, *, batch_norm=True, cached_features=False,
                 record=None) -> list[dict]:
        return [probe.probe_segment(cached_features),
                probe.all_groups_segment(config, num_groups, batch_norm)]
