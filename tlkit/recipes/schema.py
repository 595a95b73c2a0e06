"""Typed recipe sections (dataclasses) and their validation.

A recipe is plain data: YAML in, these dataclasses after validation, YAML out again
(`Recipe.to_dict`). Validation walks the dataclass type hints, so every error names the key
path (`data.splits.val_fraction`), what was expected and what was received. Unknown keys are
errors too, with a `difflib` suggestion (`unknown key 'optimiser' at top level; did you mean
'optimizer'?`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Literal, Union

from tlkit import config as config_lib
from tlkit import registry
from tlkit._io import short_repr

SOURCES = registry.DATA_SOURCES.names()
HEAD_KINDS = ("classification", "multilabel", "mlp")
SCHEDULES = config_lib.UNFREEZE_SCHEDULES
BN_POLICIES = config_lib.BN_POLICIES
OPTIMIZERS = config_lib.OPTIMIZERS
LR_SCHEDULES = config_lib.LR_SCHEDULES
DISTRIBUTIONS = config_lib.DISTRIBUTIONS
EXPORT_FORMATS = config_lib.EXPORT_FORMATS
TUNE_ALGORITHMS = ("random", "bayesian", "hyperband")
SPLITS = ("train", "val", "test")
UNLABELED_SOURCES = ("folder", "numpy")
"""`data.source`s whose loader takes `data.unlabeled` (`tlkit.runner.data` passes it on)."""
TINY_BACKBONES = tuple(e.name for e in registry.BACKBONES if "folder" in e.needs)
MAX_IMAGE_SIZE = 4096
"""Largest `data.image_size` (pixels a side): beyond it a batch no longer fits in memory."""
MAX_BATCH_SIZE = 65536
MAX_EPOCHS = config_lib.MAX_EPOCHS


class RecipeError(ValueError):
    """A recipe that cannot be used: unknown key, wrong type or bad value (message names the key)."""


def _where(path: str) -> str:
    return path or "top level"


def _fail(path: str, expected: str, value) -> typing.NoReturn:
    raise RecipeError(f"{_where(path)}: expected {expected}, got {short_repr(value)}")


def bounded(default=None, *, min=None, max=None, factory=None):  # noqa: A002
    """A recipe field with numeric bounds (`min` / `max`, inclusive), declared once with the
    field and checked for every number it holds (an int, each item of a list, each value of
    a mapping) when a recipe is read.

    Example:
    ```python
    batch_size: int | None = bounded(min=1, max=MAX_BATCH_SIZE)
    ```
    """
    metadata = {"min": min, "max": max}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _check_bounds(obj, path) -> None:
    for f in dataclasses.fields(obj):
        if f.metadata.get("field") or (f.metadata.get("min") is None
                                        and f.metadata.get("max") is None):
            continue
        value = getattr(obj, f.name)
        items = (value.items() if isinstance(value, dict)
                 else enumerate(value) if isinstance(value, list) else [(None, value)])
        low, high = f.metadata["min"], f.metadata["max"]
        for key, item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if (low is not None and item < low) or (high is not None and item > high):
                where = (f"{path}.{f.name}" if path else f.name) + (
                    "" if key is None else f"[{key}]" if isinstance(key, int) else f".{key}")
                number = "an int" if isinstance(item, int) else "a number"
                expected = (f"{number} >= {_num(low)}" if low is not None and item < low
                            else f"{number} <= {_num(high)}")
                _fail(where, expected, item)


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# -- sections ------------------------------------------------------------------------------------
@dataclasses.dataclass
class BackboneConfig:
    """Which pretrained backbone, and how to build it.

    Exactly one of `name` (a tlkit pretrained name such as `efficientnet_lite0`, a
    `keras.applications` name, `keras_hub:<preset>`, or `tiny` / `tiny_text` for a tiny
    SavedModel made on the fly), `handle` (TF-Hub / Kaggle) or `path` (local SavedModel folder).
    `options` go to the backbone's constructor (e.g. `image_size`, `output_key`,
    `trainable_patterns`); `input_info` describes the input of a SavedModel backbone.
    """

    name: str | None = None
    handle: str | None = None
    path: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    input_info: dict[str, Any] | None = None

    def check(self, path):
        given = [k for k in ("name", "handle", "path") if getattr(self, k)]
        if len(given) != 1:
            raise RecipeError(
                f"{path}: expected exactly one of 'name', 'handle' or 'path', got {given or 'none'}"
            )

    @property
    def spec(self) -> str:
        """The string given to `tlkit.backbones.get`."""
        return self.name or self.handle or self.path


@dataclasses.dataclass
class HeadConfig:
    """The new head: `kind` (classification | multilabel | mlp), dropout, hidden layers, pooling."""

    kind: Literal["classification", "multilabel", "mlp"] = "classification"
    dropout: float = 0.2
    hidden_units: list[int] = bounded(factory=lambda: [256], min=1, max=65536)
    pooling: Literal["avg", "max"] = "avg"

    def check(self, path):
        if not 0.0 <= self.dropout < 1.0:
            _fail(f"{path}.dropout", "a float in [0, 1)", self.dropout)
        for i, units in enumerate(self.hidden_units):
            if units < 1:
                _fail(f"{path}.hidden_units[{i}]", "an int >= 1", units)


@dataclasses.dataclass
class SplitsConfig:
    """Where the splits come from.

    `train` / `val` / `test` are split names of the source (TFDS split strings such as
    `"train[:80%]"`); a missing `val` / `test` is carved out of train with `val_fraction` /
    `test_fraction` (stratified, seeded).
    """

    train: str | None = None
    val: str | None = None
    test: str | None = None
    val_fraction: float = config_lib.VAL_FRACTION
    test_fraction: float = config_lib.TEST_FRACTION

    def check(self, path):
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                _fail(f"{path}.{key}", "a float in [0, 1)", value)
        if self.val_fraction + self.test_fraction >= 1.0:
            _fail(
                f"{path}.val_fraction + test_fraction",
                "a sum < 1",
                (self.val_fraction + self.test_fraction),
            )


@dataclasses.dataclass
class DataConfig:
    """The labelled data.

    Args (YAML keys):
        source: tfds | folder | csv | numpy | fashion_mnist | digits | tweets.
        name: TFDS data set name (`source: tfds`).
        path: folder, CSV file or `.npz` file (`folder`, `csv`, `numpy`).
        x_col, y_col, kind: CSV columns and what `x_col` holds (`image` or `text`).
        splits: see `SplitsConfig`.
        image_size: resize images when loading (int or `[height, width]`); the model resizes
            to the backbone's size itself, so this only makes batches uniform.
        per_class: examples kept per class: an int (train split) or `{split: int}`.
        augmentation: `{name: value}` for `tlkit.data.augmentation` (e.g. `flip: horizontal`,
            `rotation: 0.1`, `zoom: 0.1`); images only; not used on cached features.
        batch_size: examples per batch (per replica); default (null): the device's, from
            `tlkit.distribute.distribution_plan` (32 on CPU, 64 on GPU, 128 per TPU core).
        cache_features: train the head on features extracted once from the frozen backbone.
        slice_by: metadata column to slice test metrics by (e.g. `source`).
        allow_leakage: train even when the data audit finds the same example in two splits
            (default: refuse, since the evaluation would be optimistic).
        drop_remainder: training batches of exactly `batch_size` (static shapes); default
            (null): on under a TPU strategy, off elsewhere.
        class_names: optional class list (label order).
        unlabeled: optional unlabelled examples: a folder of images (`source: folder`, every
            image under it) or an `.npy` / `.npz` file of inputs shaped like `x` (`source:
            numpy`; an `.npz` holds them as `x`); kept as `LabeledData.unlabeled`, audited
            with the rest (its copies in val / test are leakage).
        options: extra keyword arguments for the loader.
    """

    source: Literal[SOURCES] = "digits"
    name: str | None = None
    path: str | None = None
    x_col: str | None = None
    y_col: str | None = None
    kind: Literal["image", "text"] | None = None
    splits: SplitsConfig = dataclasses.field(default_factory=SplitsConfig)
    image_size: int | list[int] | None = bounded(min=1, max=MAX_IMAGE_SIZE)
    per_class: int | dict[str, int] | None = bounded(min=1, max=10**8)
    augmentation: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int | None = bounded(min=1, max=MAX_BATCH_SIZE)
    cache_features: bool = False
    slice_by: str | None = None
    allow_leakage: bool = False
    drop_remainder: bool | None = None
    class_names: list[str] | None = None
    unlabeled: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def check(self, path):
        if self.unlabeled is not None and self.source not in UNLABELED_SOURCES:
            _fail(f"{path}.unlabeled", "only with source " + " or ".join(UNLABELED_SOURCES),
                  f"source {self.source!r}")
        missing = [k for k in registry.DATA_SOURCES.get(self.source).needs if not getattr(self, k)]
        if missing:
            raise RecipeError(f"{path}.{missing[0]}: required when {path}.source is {self.source!r}")
        if self.batch_size is not None and self.batch_size < 1:
            _fail(f"{path}.batch_size", "an int >= 1", self.batch_size)
        if isinstance(self.image_size, list) and (
            len(self.image_size) != 2 or min(self.image_size) < 1
        ):
            _fail(
                f"{path}.image_size", "an int or [height, width] of positive ints", self.image_size
            )
        if isinstance(self.image_size, int) and self.image_size < 1:
            _fail(f"{path}.image_size", "a positive int", self.image_size)
        if isinstance(self.per_class, int) and self.per_class < 1:
            _fail(f"{path}.per_class", "an int >= 1", self.per_class)
        if isinstance(self.per_class, dict):
            for split, n in self.per_class.items():
                if split not in SPLITS:
                    _unknown(f"{path}.per_class", split, SPLITS)
                if n < 1:
                    _fail(f"{path}.per_class.{split}", "an int >= 1", n)


def _fine_tune_section(name, section, doc, extra=(), namespace=None):
    """A recipe section made of the `tlkit.FineTuneConfig` fields whose recipe key is in
    `section` (YAML key = the part after the dot), in the config's order, with the config's
    types and defaults; `check` applies the config's bounds, naming the YAML key."""
    fields = []
    for field_name, field in config_lib.FIELDS.items():
        prefix, _, key = field.metadata["yaml"].partition(".")
        if prefix == section:
            default = config_lib.DEFAULTS[field_name]
            fields.append((key, config_lib.HINTS[field_name], dataclasses.field(
                default=default, metadata={**field.metadata, "field": field_name})))
    fields = list(extra) + fields

    def check(self, path):
        for f in dataclasses.fields(self):
            field_name = f.metadata.get("field")
            if field_name is None:
                continue
            problem = config_lib.check_value(field_name, getattr(self, f.name))
            if problem:
                _fail(f"{path}.{f.name}", problem, getattr(self, f.name))
        values = types.SimpleNamespace(**{
            f.metadata["field"]: getattr(self, f.name)
            for f in dataclasses.fields(self) if f.metadata.get("field")
        })
        for field_name, message in config_lib.cross_check(values):
            key = config_lib.FIELDS[field_name].metadata["yaml"].partition(".")[2]
            if field_name == "head_epochs":
                raise RecipeError(f"{path}: {message}")
            raise RecipeError(f"{path}.{key}: {message}")
        extra_check = (namespace or {}).get("extra_check")
        if extra_check is not None:
            extra_check(self, path)

    ns = {k: v for k, v in (namespace or {}).items() if k != "extra_check"}
    ns["check"] = check
    cls = dataclasses.make_dataclass(name, fields, namespace=ns)
    cls.__module__ = __name__
    cls.__doc__ = doc + "\n\n    Args (YAML keys; declared once in `tlkit.config.FineTuneConfig`):\n" + "".join(
        f"        {f.name}: {f.metadata['help']}.\n"
        for f in dataclasses.fields(cls) if f.metadata.get("help"))
    return cls


PhasesConfig = _fine_tune_section(
    "PhasesConfig", "phases",
    "Training phases: the head alone, then fine-tuning with an unfreezing schedule (`schedule`:\n"
    "    gradual, all or table; see `tlkit.config`).",
)


OptimizerConfig = _fine_tune_section(
    "OptimizerConfig", "optimizer",
    "Optimizer of both phases (`name`, `lr`, `head_lr`, `layerwise_decay`, `schedule`,\n"
    "    `weight_decay`).",
    namespace={"resolved_head_lr": property(
        lambda self: self.head_lr if self.head_lr is not None else 10.0 * self.lr)},
)


RegularizationConfig = _fine_tune_section(
    "RegularizationConfig", "regularization",
    "Regularization for small or imbalanced data: MixUp / CutMix on training batches (labels\n"
    "    become one-hot, the loss categorical), class weights, focal loss.",
)


def _check_distribution(self, path):
    allowed = config_lib.DISTRIBUTIONS
    if self.strategy not in allowed and not self.strategy.startswith("tpu:"):
        _fail(f"{path}.strategy", "one of " + ", ".join(map(repr, allowed)) + " or 'tpu:<name>'",
              self.strategy)


DistributeConfig = _fine_tune_section(
    "DistributeConfig", "distribute",
    "Where to train: `strategy` (auto | cpu | gpu | mirrored | multiworker | tpu | tpu:<name>,\n"
    "    see `tlkit.distribute.get_strategy`), `mixed_precision` (`mixed_float16` on GPU,\n"
    "    `mixed_bfloat16` on CPU / TPU), `scale_lr` (multiply learning rates by the number of\n"
    "    replicas; `data.batch_size` is per replica), and the XLA / steps-per-execution settings\n"
    "    of `tlkit.FineTuneConfig` (null `steps_per_execution`: `tlkit.distribute.distribution_plan`'s).",
    extra=[
        ("strategy", str, dataclasses.field(default="auto")),
        ("mixed_precision", bool, dataclasses.field(default=False)),
        ("scale_lr", bool, dataclasses.field(default=False)),
    ],
    namespace={"extra_check": _check_distribution},
)


@dataclasses.dataclass
class TuneConfig:
    """Hyperparameter search (`tlkit tune`, run by `tlkit.tuning.tune_recipe`).

    `space` maps a tunable parameter (short name such as `lr`, or the recipe key it sets, such
    as `optimizer.lr`) to its range: `{min, max, log: true}` / `{min, max, step}` /
    `{choice: [...]}`; see `tlkit.tuning.space` (which validates it) for the parameters.
    """

    algorithm: Literal["random", "bayesian", "hyperband"] = "random"
    max_trials: int = bounded(10, min=1, max=10_000)
    objective: str = "val_accuracy"
    space: dict[str, Any] = dataclasses.field(default_factory=dict)

    def check(self, path):
        if self.max_trials < 1:
            _fail(f"{path}.max_trials", "an int >= 1", self.max_trials)
        if self.space:
            from tlkit.tuning.space import SearchSpace

            try:
                SearchSpace.from_config(self.space)
            except ValueError as err:
                message = str(err).removeprefix("tune space: ")
                raise RecipeError(f"{path}.space: {message}") from None


def _peft_section():
    """The `peft:` section: `method` plus `tlkit.peft.LoraConfig`'s fields, declared there once
    (YAML lists where the config keeps tuples); `check` is the config's own validation."""
    from tlkit.peft.config import LoraConfig
    from tlkit.peft.errors import PeftError

    hints = typing.get_type_hints(LoraConfig)
    yaml_types = {"targets": list[str] | None, "quantize": Literal["int8"] | None}
    fields = [("method", Literal["lora"], dataclasses.field(default="lora"))] + [
        (f.name, yaml_types.get(f.name, hints[f.name]), dataclasses.field(default=f.default))
        for f in dataclasses.fields(LoraConfig)
    ]

    def lora_config(self) -> LoraConfig:
        return LoraConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LoraConfig)})

    def check(self, path):
        try:
            self.lora_config()
        except PeftError as err:
            raise RecipeError(f"{path}: {err}") from None

    cls = dataclasses.make_dataclass(
        "PeftConfig", fields, namespace={"lora_config": lora_config, "check": check}
    )
    cls.__module__ = __name__
    cls.__doc__ = (
        "Parameter-efficient fine-tuning (`method: lora`): the backbone's weights stay frozen and\n"
        "    only LoRA adapters (and the head) train; keys are `tlkit.peft.LoraConfig`'s (`rank`,\n"
        "    `alpha`, `targets`, `train_norms`, `quantize`)."
    )
    return cls


PeftConfig = _peft_section()


@dataclasses.dataclass
class OutputConfig:
    """Where results go: `dir` (default `runs/<recipe name>`), export formats, TensorBoard.

    `temperature_scaling: true` fits a temperature on the validation split after training
    (`tlkit.reports.fit_temperature`), stores it in the run (`calibration.json`) and applies it
    in `tlkit predict` and the exports; the report shows the calibration error before / after.
    """

    dir: str | None = None
    export: list[Literal[config_lib.EXPORT_FORMATS]] = (
        dataclasses.field(default_factory=lambda: ["keras"])
    )
    tensorboard: bool = True
    temperature_scaling: bool = False


@dataclasses.dataclass
class CompareConfig:
    """Baselines trained beside the transfer run, on the same data, for a side-by-side report.

    Args (YAML keys):
        scratch_epochs: train the same architecture from random weights (all layers, BatchNorm
            statistics updating) for this many epochs and report its test accuracy next to the
            transfer run's; 0 turns it off. Needs a backbone that can be built without weights
            (`efficientnet_lite0`, `vgg16_hed`, keras.applications names).
        scratch_lr: Adam learning rate of the from-scratch run.
    """

    scratch_epochs: int = bounded(0, min=0, max=MAX_EPOCHS)
    scratch_lr: float = bounded(1e-3, min=0.0, max=10.0)

    def check(self, path):
        if self.scratch_epochs < 0:
            _fail(f"{path}.scratch_epochs", "an int >= 0", self.scratch_epochs)
        if not self.scratch_lr > 0:
            _fail(f"{path}.scratch_lr", "a float > 0", self.scratch_lr)


@dataclasses.dataclass
class Recipe:
    """A complete transfer-learning run, as data.

    Example:
    ```python
    recipe = tlkit.recipes.load_recipe("recipes/smoke.yaml", overrides=["optimizer.lr=3e-4"])
    print(tlkit.recipes.dump_recipe(recipe))
    ```
    """

    name: str = "recipe"
    description: str = ""
    seed: int = bounded(0, min=0, max=2**32 - 1)
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    phases: PhasesConfig = dataclasses.field(default_factory=PhasesConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    distribute: DistributeConfig = dataclasses.field(default_factory=DistributeConfig)
    regularization: RegularizationConfig = dataclasses.field(
        default_factory=RegularizationConfig)
    tune: TuneConfig | None = None
    peft: PeftConfig | None = None
    compare: CompareConfig = dataclasses.field(default_factory=CompareConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)

    def check(self, path):
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.name):
            _fail("name", "letters, digits, '_', '.' or '-' (it names the run folder)", self.name)

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        """Validates a plain dict (e.g. from `yaml.safe_load`) into a `Recipe`."""
        return _convert(data, cls, "")

    def to_dict(self) -> dict:
        """Plain data (dicts, lists, scalars) that `from_dict` turns back into an equal recipe."""
        return _plain(dataclasses.asdict(self))

    def fine_tune_config(self) -> config_lib.FineTuneConfig:
        """The recipe's fine-tuning settings (`phases`, `optimizer`, `regularization`,
        `distribute` keys)."""
        return config_lib.from_sections(self)


def check_required(recipe: Recipe, sections=("backbone",)) -> None:
    """Raises `RecipeError` when a section a run needs is missing (the schema's defaults can't
    stand in for it: there is no default backbone)."""
    if "backbone" in sections and not recipe.backbone.spec:
        raise RecipeError(
            "backbone: required section, with one of 'name', 'handle' or 'path' "
            "(e.g. backbone: {name: efficientnet_lite0})"
        )


# -- generic conversion ----------------------------------------------------------------------------
def _unknown(path, key, allowed) -> typing.NoReturn:
    where = f"in '{path}'" if path else "at top level"
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise RecipeError(
        f"unknown key '{key}' {where}{hint} (allowed: {', '.join(map(str, allowed))})"
    )


def _number(value):
    """`value` as a float when it is a number or a numeric string (YAML 1.1 reads `3e-4` as str)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(
        r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value
    ):
        return float(value)
    return None


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return (
            f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}"
        )
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an int", float: "a float", bool: "a bool", Any: "a value"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value, tp, path):
    """Checks `value` against type `tp` and returns it converted (dataclasses built)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        _check_finite(value, path)
        return value
    if tp is type(None):
        if value is not None:
            _fail(path, "null", value)
        return None
    if origin in (Union, types.UnionType):
        return _convert_union(value, tp, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool):
            _fail(path, "one of " + ", ".join(repr(a) for a in allowed), value)
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(value, tp, path)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            _fail(path, _describe(tp), value)
        return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            _fail(path, _describe(tp), value)
        out = {}
        for k, v in value.items():
            key = _convert(k, key_tp, f"{path} key {k!r}")
            out[key] = _convert(v, value_tp, f"{path}.{k}")
        return out
    if tp is bool:
        if not isinstance(value, bool):
            _fail(path, "a bool (true / false)", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
                return int(value)
            _fail(path, "an int", value)
        return value
    if tp is float:
        number = _number(value)
        if number is None:
            _fail(path, "a float", value)
        if not math.isfinite(number):
            _fail(path, "a finite float (not NaN or infinity)", value)
        return number
    if tp is str:
        if not isinstance(value, str):
            _fail(path, "a string", value)
        return value
    raise TypeError(f"Unsupported type in recipe schema: {tp!r}")  # a bug in the schema


def _check_finite(value, path) -> None:
    """Free-form values (`data.augmentation`, `backbone.options`, ...) hold no NaN / infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        _fail(path, "a finite number (not NaN or infinity)", value)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")


def _convert_union(value, tp, path):
    options = [o for o in typing.get_args(tp) if o is not type(None)]
    if isinstance(value, float) and not math.isfinite(value):
        _fail(path, "a finite float (not NaN or infinity)", value)
    if value is None:
        if len(options) < len(typing.get_args(tp)):
            return None
        _fail(path, _describe(tp), value)
    # A mapping or list goes to the one container option that takes it, so that errors
    # inside it keep their precise key path.
    if isinstance(value, (dict, list)):
        kind = dict if isinstance(value, dict) else list
        for option in options:
            container = dict if dataclasses.is_dataclass(option) else typing.get_origin(option)
            if container is kind:
                return _convert(value, option, path)
        _fail(path, _describe(tp), value)
    for option in options:
        try:
            return _convert(value, option, path)
        except RecipeError:
            continue
    _fail(path, _describe(tp), value)


def _convert_dataclass(value, cls, path):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        _fail(path, "a mapping", value)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, item in value.items():
        if key not in names:
            _unknown(path, key, names)
        kwargs[key] = _convert(item, hints[key], f"{path}.{key}" if path else str(key))
    obj = cls(**kwargs)
    _check_bounds(obj, path)
    check = getattr(obj, "check", None)
    if check is not None:
        check(path or "recipe")
    return obj


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
