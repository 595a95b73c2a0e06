"""`FineTuneConfig`: every fine-tuning setting, declared once (TensorFlow-free).

Each field carries its default, its allowed values (a `Literal` type) or bounds (`min` / `max`),
a one-line help, and the recipe key that sets it (`yaml`, e.g. `optimizer.lr`). Everything else
derives from these declarations:

- `tlkit.fine_tune(model, train, val, config=..., **overrides)` takes a config and/or field names
  as keyword overrides;
- the recipe schema's `phases` and `optimizer` sections (and `distribute.jit_compile` /
  `steps_per_execution`) are built from the fields (`tlkit.recipes.schema`);
- the tuner's search space names fields; their kinds, bounds and defaults come from here
  (`tlkit.tuning.space`).

The vocabularies (BatchNorm policies, unfreezing schedules, optimizers, LR schedules,
strategies, export formats) live here once; other modules import them from here.

Strategy (`strategy`, default `auto`): `gradual` follows `unfreeze` below; `full`, `lp_ft`,
`linear_probe`, `surgical` and `auto` set the epochs / unfreezing themselves (`auto` runs
`gradual` when an unfreeze setting below is set, or the probe cannot run) (what each ignores and how the other
settings apply: `tlkit.training.strategies`).

Unfreezing (`unfreeze`), one meaning everywhere:
- `gradual`: when fine-tuning starts, the top `first` backbone groups train; every `every`
  epochs `per_step` more join. `first` / `per_step` left at `None` spread the groups evenly
  over the fine-tuning epochs (`ceil(groups / fine_epochs)` each), so all train in the last one.
- `all`: every group from the first fine-tuning epoch.
- `table`: `{fine-tuning epoch: groups or "all"}`, epochs counted from the start of fine-tuning.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Literal

from tlkit._deprecation import renamed
from tlkit._io import short_repr

BN_POLICIES = ("frozen", "train_affine", "update")
UNFREEZE_SCHEDULES = ("gradual", "all", "table")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "one_cycle")
LOSS_TYPES = ("cross_entropy", "focal")
HEAD_EPOCH_RESTORE = ("never", "always")
# `tf.distribute` strategies (`tlkit.distribute.get_strategy`): the "distribution", so that
# "strategy" is the fine-tuning method alone (`FINE_TUNE_STRATEGIES`).
DISTRIBUTIONS = ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")
FINE_TUNE_STRATEGY_CLASSES = {
    "gradual": "tlkit.training.strategies.gradual:Gradual",
    "full": "tlkit.training.strategies.full:Full",
    "lp_ft": "tlkit.training.strategies.lp_ft:LpFt",
    "linear_probe": "tlkit.training.strategies.linear_probe:LinearProbe",
    "surgical": "tlkit.training.strategies.surgical:Surgical",
    "auto": "tlkit.training.strategies.auto:Auto",
    "self_training": "tlkit.training.strategies.self_training:SelfTraining",
}
"""The fine-tuning strategies (`FineTuneConfig.strategy`) and the class implementing each
(`tlkit.training.strategies.registry` imports it on first use): a new strategy is one module
in `tlkit/training/strategies/` plus one line here."""
FINE_TUNE_STRATEGIES = tuple(FINE_TUNE_STRATEGY_CLASSES)
EXPORT_FORMATS = (
    "keras", "savedmodel", "tflite", "tflite-dynamic", "hub", "savedmodel-int8", "tflite-int8",
    "onnx",
)

VAL_FRACTION = 0.1
"""The default share of each class held out for validation where the data has no val split:
every loader (`tlkit.data.from_image_folder`, `from_csv`, `from_numpy`, `from_text_files`,
`digits`, `tweets`, `fashion_mnist`) and recipes' `data.splits.val_fraction`."""
TEST_FRACTION = 0.1
"""The same for the test split (`test_fraction`; recipes: `data.splits.test_fraction`), so
`tlkit.fine_tune(model, data)` ends with a held-out test score by default."""


MAX_EPOCHS = 100_000
"""Upper bound of every epoch count (beyond it a setting is a typo, not a plan)."""
MAX_LR = 10_000.0
"""Upper bound of the learning rates: beyond it every weight overflows (1e3 still runs, and
wrecks fine-tuning, which a test does on purpose)."""


class ConfigError(ValueError):
    """A fine-tuning setting with a bad value; the message names the field and what to give."""


def setting(default, help, *, yaml, min=None, max=None, min_open=False, expected=None):  # noqa: A002
    """A `FineTuneConfig` field: `default`, one-line `help`, the recipe key `yaml`, bounds.

    `expected` overrides the generated description of valid values in error messages.
    """
    metadata = {"help": help, "yaml": yaml, "min": min, "max": max, "min_open": min_open,
                "expected": expected}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class FineTuneConfig:
    """Every setting of `tlkit.fine_tune`, with defaults (see the module docstring).

    Example:
    ```python
    config = tlkit.FineTuneConfig(head_epochs=2, fine_epochs=4, layerwise_decay=2.6)
    tlkit.fine_tune(model, train, val, config=config, lr=3e-4)  # overrides are field names
    tlkit.FineTuneConfig.from_config(config.get_config()) == config  # True
    ```
    """

    strategy: Literal[FINE_TUNE_STRATEGIES] = setting(
        "auto", "how to fine-tune: auto (a converged linear probe, then all groups (LP-FT); the "
        "probe alone when it wins on validation; gradual where no probe can run or the unfreeze "
        "schedule is set), gradual (the unfreeze schedule), full, lp_ft (converged linear "
        "probe, then all groups), linear_probe (probe only), surgical (one group) or "
        "self_training (an LP-FT teacher pseudo-labels the unlabelled pool, an LP-FT student "
        "trains on labelled + pseudo-labelled data); see "
        "tlkit.training.strategies",
        yaml="phases.strategy")
    surgical_group: int | str | None = setting(
        None, "surgical: the one backbone group that trains (index from the input side, "
        "negative from the top, a group name, or 'auto': chosen on validation)",
        yaml="phases.surgical_group",
        expected="a group index (int), a group name, 'auto' or null")
    probe_c: float | None = setting(
        4.0, "inverse L2 strength of the linear probe that starts fine-tuning (lp_ft, auto, "
        "surgical_group 'auto'), on features scaled to unit mean squared norm (C does not "
        "depend on the scale of a backbone's features); null: the probe's C chosen on validation from "
        "head_training.PROBE_CS; how 4 was chosen: docs/benchmarks/strategies.md",
        yaml="phases.probe_c", min=0.0, max=1e6, min_open=True,
        expected="a float > 0 (e.g. 4; at most 1e6) or null")
    probe_temperature: float = setting(
        3.0, "LP-FT (lp_ft, auto): the probe's logits are divided by this before fine-tuning "
        "starts (its predictions stay; > 1 leaves more loss, the 'energy' that adapts the "
        "features, Ren et al. 2023; how 3 was chosen: docs/benchmarks/strategies.md); the "
        "probe alone (linear_probe) is never scaled; 1: the probe as fitted",
        yaml="phases.probe_temperature", min=0.0, max=1000.0, min_open=True)
    pseudo_label_threshold: float = setting(
        0.9, "self_training: the teacher's top probability from which an unlabelled example "
        "gets its pseudo-label", yaml="phases.pseudo_label_threshold", min=0.0, max=1.0,
        min_open=True)
    pseudo_labels_per_class: int | None = setting(
        None, "self_training: at most this many pseudo-labels per class (the most confident); "
        "null: the median over classes of the examples above the threshold (class-balanced: "
        "no class floods the student)", yaml="phases.pseudo_labels_per_class", min=1,
        max=10**8, expected="an int >= 1 or null")
    head_epochs: int = setting(1, "epochs with only the head training, before unfreezing",
                               yaml="phases.head_epochs", min=0, max=MAX_EPOCHS)
    fine_epochs: int = setting(3, "epochs of fine-tuning after the head phase (0: none)",
                               yaml="phases.fine_epochs", min=0, max=MAX_EPOCHS)
    min_steps_per_epoch: int | None = setting(
        None, "floor on the optimizer steps of an epoch: a training set of fewer batches is "
        "repeated within the epoch, so each phase runs at least its epochs x this many steps "
        "(1 head epoch + 3 fine epochs at 1 batch per pass would be 1 + 3 steps); null: the "
        "strategy's floor, 16 where the head starts untrained (full, gradual, surgical) or where "
        "a converged linear probe starts it (auto, lp_ft, self_training) on fewer than 50 "
        "labelled examples per class, else 8; how they were chosen: "
        "docs/benchmarks/strategies.md; epochs, early stopping, unfreezing and the "
        "validation passes keep their meaning; 1: off",
        yaml="phases.min_steps_per_epoch", min=1, max=1_000_000,
        expected="an int >= 1 or null")
    unfreeze: Literal[UNFREEZE_SCHEDULES] = setting(
        "gradual", "which backbone groups train when: gradual, all or table",
        yaml="phases.schedule")
    first: int | None = setting(
        None, "gradual: top groups trainable when fine-tuning starts (null: spread evenly)",
        yaml="phases.first", min=0, max=100_000)
    every: int = setting(1, "gradual: epochs between two unfreezing steps",
                         yaml="phases.every", min=1, max=MAX_EPOCHS)
    per_step: int | None = setting(
        None, "gradual: groups added per unfreezing step (null: spread evenly; 0: depth fixed)",
        yaml="phases.per_step", min=0, max=100_000)
    table: dict[int, int | str] | None = setting(
        None, "table: {fine-tuning epoch: trainable top groups or 'all'}", yaml="phases.table")
    bn_policy: Literal[BN_POLICIES] = setting(
        "frozen", "BatchNorm layers: frozen, train_affine (gamma/beta) or update (statistics too)",
        yaml="phases.bn_policy")
    patience: int | None = setting(
        3, "early stopping patience (epochs) from the start of fine-tuning; best weights "
        "restored (null: off)", yaml="phases.patience", min=1, max=MAX_EPOCHS)
    restore_head_epoch: Literal[HEAD_EPOCH_RESTORE] = setting(
        "never", "whether early stopping may hand back a head-only epoch's weights when "
        "fine-tuning epochs follow: never (the best fine-tuning epoch; on small validation "
        "splits the head epoch's lower loss was noise; see docs/benchmarks/strategies.md) or "
        "always (the best epoch of the run)", yaml="phases.restore_head_epoch")
    restore_best_from: int = setting(
        100, "early stopping chooses (stops at, restores) an epoch only on a validation split "
        "of at least this many examples; below, the last epoch's weights stay (unless it "
        "diverged); see docs/benchmarks/strategies.md; 0: always choose",
        yaml="phases.restore_best_from", min=0, max=10**9)
    optimizer: Literal[OPTIMIZERS] = setting("adam", "optimizer class", yaml="optimizer.name")
    lr: float = setting(1e-4, "peak learning rate of fine-tuning (top group)",
                        yaml="optimizer.lr", min=0.0, max=MAX_LR, min_open=True)
    head_lr: float | None = setting(None, "learning rate of the head phase (null: 10 x lr)",
                                    yaml="optimizer.head_lr", min=0.0,
                                    max=MAX_LR, min_open=True)
    layerwise_decay: float | None = setting(
        None, "each group below the top trains at 1/decay of the LR above (null: one LR)",
        yaml="optimizer.layerwise_decay", min=1.0, max=1000.0,
        expected="a float >= 1 (e.g. 2.6; at most 1000) or null")
    layer_decay: float | None = setting(
        None, "each group below the top trains at layer_decay x the LR above (timm/MAE style, "
        "e.g. 0.75; null: one LR)", yaml="optimizer.layer_decay", min=0.0, max=1.0,
        min_open=True, expected="a float in (0, 1] (e.g. 0.75) or null")
    ema_momentum: float | None = setting(
        None, "keep an exponential moving average of the weights with this momentum "
        "(e.g. 0.99); validation, early stopping and the final weights use it (null: off)",
        yaml="optimizer.ema_momentum", min=0.0, max=1.0, min_open=True,
        expected="a float in (0, 1) (e.g. 0.99) or null")
    label_smoothing: float = setting(
        0.0, "label smoothing of the cross-entropy loss (0: off; e.g. 0.1)",
        yaml="optimizer.label_smoothing", min=0.0, max=0.5, expected="a float in [0, 0.5]")
    lr_schedule: Literal[LR_SCHEDULES] = setting(
        "cosine", "shape of the fine-tuning LR: cosine (to lr / 100), constant or one_cycle",
        yaml="optimizer.schedule")
    weight_decay: float | None = setting(None, "decoupled weight decay of the optimizer",
                                         yaml="optimizer.weight_decay", min=0.0, max=10.0)
    jit_compile: Literal["auto"] | bool = setting(
        "auto", "XLA for the train step: auto (as compiled, else Keras decides), true or false",
        yaml="distribute.jit_compile")
    steps_per_execution: int | None = setting(
        None, "train steps per tf.function call (null: as compiled / the strategy's plan)",
        yaml="distribute.steps_per_execution", min=1, max=100_000)
    # -- regularization for small data and weight averaging (#19) --------------------------------
    mixup: float | None = setting(
        None, "keras.layers.MixUp on training batches with this alpha (e.g. 0.2); labels become "
        "one-hot and the loss categorical (null: off)", yaml="regularization.mixup", min=0.0,
        max=100.0, min_open=True, expected="a float > 0 (e.g. 0.2; at most 100) or null")
    cutmix: float | None = setting(
        None, "keras.layers.CutMix on training batches with this factor (e.g. 1.0); with mixup "
        "too, one of the two per batch (null: off)", yaml="regularization.cutmix", min=0.0,
        max=1.0, min_open=True, expected="a float in (0, 1] (e.g. 1.0) or null")
    class_weight: Literal["balanced"] | dict[int, float] | None = setting(
        None, "per-class loss weights: balanced (inverse class frequency of the training "
        "labels) or {class index: weight} (null: equal)", yaml="regularization.class_weight",
        expected="'balanced', a mapping {class index >= 0: weight > 0} or null")
    loss_type: Literal[LOSS_TYPES] = setting(
        "cross_entropy", "classification loss: cross_entropy or focal "
        "(keras.losses.CategoricalFocalCrossentropy, for class imbalance)",
        yaml="regularization.loss")
    focal_gamma: float = setting(2.0, "focusing parameter gamma of the focal loss",
                                 yaml="regularization.focal_gamma", min=0.0, max=100.0)
    swa_epochs: int | None = setting(
        None, "stochastic weight averaging: final weights = the mean over the last swa_epochs "
        "epochs of fine-tuning, BatchNorm statistics recomputed when they train (null: off)",
        yaml="phases.swa_epochs", min=1, max=MAX_EPOCHS)
    wise_ft_alphas: list[float] | None = setting(
        None, "WiSE-FT: after fine-tuning, the weights (1 - alpha) x start of fine-tuning + "
        "alpha x end with alpha chosen on validation among these (e.g. [0.25, 0.5, 0.75, 1.0]; "
        "null: off)", yaml="phases.wise_ft_alphas", min=0.0, max=1.0,
        expected="a non-empty list of floats in [0, 1] (e.g. [0.25, 0.5, 0.75, 1.0]) or null")

    def __post_init__(self):
        self.validate()
        if self.wise_ft_alphas is not None:
            self.wise_ft_alphas = [float(a) for a in self.wise_ft_alphas]

    # -- derived values ------------------------------------------------------------------------
    @property
    def resolved_head_lr(self) -> float:
        """`head_lr`, or ten times `lr` when it is `None`."""
        return float(self.head_lr) if self.head_lr is not None else 10.0 * float(self.lr)

    @property
    def epochs(self) -> int:
        return self.head_epochs + self.fine_epochs

    def unfreeze_steps(self, num_groups: int) -> tuple[int, int]:
        """`(first, per_step)` of the gradual schedule for a backbone of `num_groups` groups."""
        spread = max(1, math.ceil(num_groups / max(self.fine_epochs, 1)))
        first = spread if self.first is None else int(self.first)
        per_step = spread if self.per_step is None else int(self.per_step)
        return first, per_step

    # -- serialization -------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Plain data: `{field: value}`, which `from_config` turns back into an equal config."""
        return {f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_config(cls, config: dict) -> FineTuneConfig:
        """A config from `get_config()`'s data (or any subset of the fields; others default)."""
        if isinstance(config, cls):
            return config
        if not isinstance(config, dict):
            raise ConfigError(f"Expected a dict of FineTuneConfig fields. Received: {config!r}")
        check_names(config)
        return cls(**config)

    def replace(self, **changes) -> FineTuneConfig:
        """A copy with `changes` (field names; validated)."""
        check_names(changes)
        return dataclasses.replace(self, **changes)

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raises `ConfigError` naming the first bad field and what it expects."""
        for name in FIELDS:
            problem = check_value(name, getattr(self, name))
            if problem:
                raise ConfigError(f"FineTuneConfig.{name}: expected {problem}, got "
                                  f"{short_repr(getattr(self, name))}")
        for name, message in cross_check(self):
            raise ConfigError(f"FineTuneConfig.{name}: {message}")


def _copy(value):
    if isinstance(value, (list, tuple)):
        return list(value)
    return dict(value) if isinstance(value, dict) else value


def choices(name: str) -> tuple:
    """The allowed values of a choice field (`bn_policy`, ...), else `()`."""
    return _parts(HINTS[name], literals_only=True)


def nullable(name: str) -> bool:
    return type(None) in _parts(HINTS[name])


def kind(name: str) -> str:
    """`"int"`, `"float"`, `"str"` (a choice), `"bool"`, `"list"` or `"mapping"`."""
    parts = [p for p in _parts(HINTS[name]) if p is not type(None)]
    if any(typing.get_origin(p) is list for p in parts):
        return "list"
    if choices(name):
        return "str"
    for tp, label in ((int, "int"), (float, "float"), (bool, "bool")):
        if tp in parts:
            return label
    return "mapping"


def _parts(tp, literals_only=False) -> tuple:
    """A union's / Literal's members, flattened (`Literal['a'] | bool | None` -> 'a', bool, None);
    with `literals_only`, the Literal values alone ('a')."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return tuple(p for a in typing.get_args(tp) for p in _parts(a, literals_only))
    return () if literals_only else (tp,)


def describe(name: str) -> str:
    """What `name` accepts, e.g. `"an int >= 1 or null"`, for error messages."""
    meta = FIELDS[name].metadata
    if meta["expected"]:
        return meta["expected"]
    allowed = choices(name)
    if allowed:
        extra = [p for p in _parts(HINTS[name]) if p is bool]
        text = "one of " + ", ".join(repr(a) for a in allowed) + (", true or false" if extra else "")
    else:
        text = {"int": "an int", "float": "a float", "mapping": "a mapping"}.get(kind(name), "a value")
        if meta["min"] is not None:
            text += f" {'>' if meta['min_open'] else '>='} {meta['min']:g}"
        elif meta["max"] is not None:
            text += f" <= {meta['max']:g}"
    return text + (" or null" if nullable(name) else "")


def check_value(name: str, value) -> str | None:
    """`None` when `value` is valid for field `name`, else what it expects (`describe`)."""
    if value is None:
        return None if nullable(name) else describe(name)
    meta = FIELDS[name].metadata
    if isinstance(value, dict) and any(
            typing.get_origin(p) is dict for p in _parts(HINTS[name])):
        return None  # a mapping where one is allowed (its entries: `cross_check`)
    if kind(name) == "list":
        ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
            not isinstance(v, bool) and isinstance(v, (int, float))
            and meta["min"] <= v <= meta["max"] for v in value)
        return None if ok else describe(name)
    allowed = choices(name)
    if isinstance(value, str) and not allowed and str in _parts(HINTS[name]):
        return None
    if allowed or kind(name) == "bool":
        ok = (value in allowed and not isinstance(value, bool)) or (
            isinstance(value, bool) and bool in _parts(HINTS[name]))
        return None if ok else describe(name)
    if kind(name) == "mapping":
        return None if isinstance(value, dict) else describe(name)
    if kind(name) == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return describe(name)
    if not math.isfinite(value):
        return describe(name) + " (finite: not NaN or infinity)"
    if kind(name) == "int" and not isinstance(value, int):
        return describe(name)
    low, high = meta["min"], meta["max"]
    if low is not None and (value < low or (meta["min_open"] and value == low)):
        return describe(name)
    if high is not None and value > high:  # the bound is named: the value is too large
        if meta["expected"]:
            return describe(name)
        return describe(name).split(" or null")[0].split(" >")[0] + f" <= {high:g}"
    return None


def cross_check(values) -> list[tuple[str, str]]:
    """Problems between fields of `values` (a config or a section object with the same names)."""
    problems = []

    def get(name):
        return getattr(values, name) if hasattr(values, name) else FIELDS[name].default

    if get("head_epochs") + get("fine_epochs") < 1:
        problems.append(("head_epochs", "expected head_epochs + fine_epochs >= 1, got 0"))
    if get("layer_decay") is not None and get("layerwise_decay") is not None:
        problems.append(("layer_decay", "give layer_decay (a factor per group, e.g. 0.75) or the "
                         "ULMFiT divisor layerwise_decay (e.g. 2.6), not both"))
    if get("ema_momentum") is not None and get("ema_momentum") == 1.0:
        problems.append(("ema_momentum", "expected a float in (0, 1) (e.g. 0.99) or null, got 1.0"))
    if get("wise_ft_alphas") is not None and get("fine_epochs") == 0:
        problems.append(("wise_ft_alphas", "WiSE-FT interpolates the weights before and after "
                         "fine-tuning, and fine_epochs is 0 (nothing to interpolate); set "
                         "fine_epochs >= 1 or wise_ft_alphas to null"))
    swa = get("swa_epochs")
    if swa is not None and swa > get("fine_epochs"):
        problems.append(("swa_epochs", f"averages the last epochs of fine-tuning: expected at "
                         f"most fine_epochs ({get('fine_epochs')}), got {swa}"))
    weights = get("class_weight")
    if isinstance(weights, dict):
        for index, weight in weights.items():
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                problems.append(("class_weight", f"expected class indices >= 0 as keys, got "
                                 f"{index!r}"))
            elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                problems.append(("class_weight", f"expected a weight > 0 for class {index}, "
                                 f"got {weight!r}"))
    if get("strategy") == "surgical" and get("surgical_group") is None:
        problems.append(("surgical_group", "required with strategy 'surgical': a group index, a "
                         "group name or 'auto'"))
    if get("unfreeze") == "table":
        table = get("table")
        if not table:
            problems.append(("table", "required when the unfreezing schedule is 'table'"))
        for epoch, count in (table or {}).items():
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                problems.append(("table", f"expected epochs >= 0 as keys, got {epoch!r}"))
            elif isinstance(count, str) and count != "all" or isinstance(count, int) and count < 0:
                problems.append(("table", f"expected an int >= 0 or 'all' at epoch {epoch}, "
                                 f"got {count!r}"))
    return problems


def check_names(values: dict) -> None:
    """Raises `ConfigError` for a key that is not a field (with the closest field name)."""
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), list(FIELDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown fine-tuning setting {key!r}{hint} (settings: "
                              f"{', '.join(FIELDS)})")


def yaml_keys() -> dict[str, str]:
    """`{recipe key: field}`, e.g. `{"optimizer.lr": "lr", ...}`."""
    return {f.metadata["yaml"]: name for name, f in FIELDS.items()}


def from_sections(sections) -> FineTuneConfig:
    """The config held by an object with recipe sections as attributes (a `Recipe`)."""
    values = {}
    for key, name in yaml_keys().items():
        section, attribute = key.split(".")
        values[name] = _copy(getattr(getattr(sections, section), attribute))
    return FineTuneConfig(**values)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(FineTuneConfig)}
"""The config's fields by name (their `metadata`: help, yaml, min, max, min_open, expected)."""

HINTS: dict[str, object] = typing.get_type_hints(FineTuneConfig)
"""The fields' types (resolved), e.g. `Literal['frozen', 'train_affine', 'update']`."""

DEFAULTS: dict[str, object] = FineTuneConfig().get_config()
"""Each field's one default."""


def settings_table() -> str:
    """A Markdown table of every `FineTuneConfig` setting: recipe key, field (the `fine_tune`
    argument), default, accepted values and help; `recipes/README.md` shows it (a test keeps
    the two equal). Regenerate with `python -m tlkit.config --markdown`.

    Example:
    ```python
    print(tlkit.config.settings_table())  # | recipe key | field | default | accepts | what |
    ```
    """

    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    rows = ["| recipe key | `fine_tune` argument | default | accepts | what it does |",
            "| --- | --- | --- | --- | --- |"]
    for name, field in FIELDS.items():
        meta = field.metadata
        default = "null" if DEFAULTS[name] is None else short_repr(DEFAULTS[name])
        rows.append(f"| `{meta['yaml']}` | `{name}` | `{cell(default)}` | {cell(describe(name))} "
                    f"| {cell(meta['help'])} |")
    return "\n".join(rows) + "\n"


__getattr__ = renamed(__name__, {"STRATEGIES": "DISTRIBUTIONS"})  # the 0.x name, for one release


if __name__ == "__main__":  # python -m tlkit.config --markdown: the settings table
    import sys

    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m tlkit.config --markdown")
    sys.stdout.write(settings_table())
