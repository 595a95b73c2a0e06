"""`LoraConfig`: the LoRA settings, validated, serializable and free of TensorFlow.

The recipe schema and the tuner can read it without importing Keras; `tlkit.peft.apply(model,
config)` applies it.
"""

from __future__ import annotations

import dataclasses

from tlkit.peft.errors import InvalidRankError, PeftError

QUANTIZE_MODES = (None, "int8")
# `alpha = DEFAULT_ALPHA_RATIO * rank` unless set.
DEFAULT_ALPHA_RATIO = 2
# The fine-tuning learning rate LoRA wants (`tlkit.fine_tune(..., lr=LORA_LR)`, recipes'
# `optimizer.lr`): adapters start at zero and need a much larger step than full fine-tuning.
# How it was chosen: docs/benchmarks/peft.md.
LORA_LR = 3e-3


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """What to adapt with LoRA and how.

    Args:
        rank: rank of the low-rank update, > 0 and at most each target layer's dimension.
            Default 4: with the default targets, MiniLM-L6 trains 1.9% of its parameters
            (rank 8 on every linear layer would be 3.9%).
        alpha: scale numerator: the update is `(alpha / rank) * A @ B` (Keras' `lora_alpha`).
            Default `None`: `2 * rank` (scale 2, the common choice; see `DEFAULT_ALPHA_RATIO`).
        targets: which layers get adapters; each entry is a layer-group name (`"block6"`,
            `"transformer_layer_5"`: its Dense / EinsumDense / Conv layers), a layer type
            (`"Dense"`, `"EinsumDense"`, `"Conv2D"`, or `"pointwise_conv"` for 1x1 convs), or a
            regular expression matched in full against a layer's name (`"query"`) or its path
            (`"transformer_layer_5/.*"`). Default `None`: in a transformer (a model with
            `query` and `value` layers) every Dense / EinsumDense layer (attention
            query / key / value / output and the feed-forward pair), otherwise the pointwise
            (1x1) convolutions.
        train_norms: also train the backbone's LayerNormalization / BatchNormalization scale and
            offset (BatchNorm still follows the fine-tuning `bn_policy`). Default `False`.
        quantize: `"int8"`: quantize the frozen base layers first (Keras' int8 path; LoRA on an
            int8 base, QLoRA-like). Default `None`.
    """

    rank: int = 4
    alpha: float | None = None
    targets: tuple[str, ...] | None = None
    train_norms: bool = False
    quantize: str | None = None

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise InvalidRankError(
                f"Expected a LoRA `rank` that is an integer > 0. Received: rank={self.rank!r}"
            )
        if self.alpha is not None and (isinstance(self.alpha, bool) or not self.alpha > 0):
            raise PeftError(f"Expected a LoRA `alpha` > 0 or None. Received: alpha={self.alpha!r}")
        if self.targets is not None:
            targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise PeftError(
                    "Expected LoRA `targets` as a non-empty list of group names, layer types "
                    f"or name patterns (or None for the default). Received: {self.targets!r}"
                )
            object.__setattr__(self, "targets", targets)
        if self.quantize not in QUANTIZE_MODES:
            raise PeftError(
                f"Expected `quantize` in {QUANTIZE_MODES}. Received: quantize={self.quantize!r}"
            )
        object.__setattr__(self, "train_norms", bool(self.train_norms))

    @property
    def scale(self) -> float:
        """`alpha / rank`, the factor of the low-rank update."""
        return self.resolved_alpha / self.rank

    @property
    def resolved_alpha(self) -> float:
        """`alpha`, or `DEFAULT_ALPHA_RATIO * rank` when it is `None`."""
        return self.alpha if self.alpha is not None else DEFAULT_ALPHA_RATIO * self.rank

    def get_config(self) -> dict:
        config = dataclasses.asdict(self)
        if config["targets"] is not None:
            config["targets"] = list(config["targets"])
        return config

    @classmethod
    def from_config(cls, config: dict) -> LoraConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - fields
        if unknown:
            raise PeftError(
                f"Unknown LoRA setting(s) {sorted(unknown)}. Expected some of {sorted(fields)}."
            )
        return cls(**config)
