"""`SearchSpace`: the hyperparameters of a fine-tuning search, declared as data.

A space is a plain dict (e.g. a recipe's `tune.space` section) that maps a tunable parameter to
its range:

```yaml
head_lr: {min: 1.0e-4, max: 1.0e-2, sampling: log}
lr: {min: 1.0e-5, max: 1.0e-3, log: true}      # `log: true` is the recipe's spelling
layerwise_decay: {values: [1.0, 2.6]}           # or `choice: [...]`, or a bare list
unfreeze_groups: {min: 1, max: 4}
dropout: {min: 0.0, max: 0.5, step: 0.1}
```

Parameters are named by their short name (`lr`) or by the recipe key they set
(`optimizer.lr`); see `TUNABLE`. `SearchSpace.from_config` validates everything up front and
raises a `ValueError` that names the parameter; `declare(hp)` turns the space into keras-tuner
`hp.Float` / `hp.Int` / `hp.Choice` calls. `fingerprint()` identifies a space, so a resumed
search can tell when it changed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re

from tlkit import config as config_lib

SAMPLINGS = ("linear", "log", "reverse_log")


@dataclasses.dataclass(frozen=True)
class Tunable:
    """A parameter that a search may tune.

    Attributes:
        name: short name, also the keras-tuner hyperparameter name.
        kind: `"float"`, `"int"` or `"str"` (a choice among `allowed`).
        recipe_key: the recipe key it sets, e.g. `"optimizer.lr"`.
        low, high: inclusive bounds of valid values (`None`: unbounded).
        low_open, high_open: whether `low` / `high` themselves are invalid.
        allowed: the valid values of a `"str"` parameter.
        default: the value used when the parameter is not searched.
        help: one line for error messages and docs.
    """

    name: str
    kind: str
    recipe_key: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allowed: tuple = ()
    default: object = None
    help: str = ""

    def describe_bounds(self) -> str:
        if self.kind == "str":
            return f"one of {list(self.allowed)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        low = "-inf" if self.low is None else _fmt(self.low)
        high = "inf" if self.high is None else _fmt(self.high)
        return f"{'an int' if self.kind == 'int' else 'a number'} in {left}{low}, {high}{right}"

    def valid(self, value) -> bool:
        if self.kind == "str":
            return value in self.allowed
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (
            value > self.high or (self.high_open and value == self.high)
        ):
            return False
        return True


def from_field(name: str, field: str) -> Tunable:
    """The `Tunable` `name` for `tlkit.FineTuneConfig` field `field`: kind, bounds, allowed
    values, default, help and recipe key come from the config (declared there once)."""
    meta = config_lib.FIELDS[field].metadata
    kind = config_lib.kind(field)
    return Tunable(name, kind, meta["yaml"], low=meta["min"], high=meta["max"],
                   low_open=meta["min_open"], allowed=config_lib.choices(field),
                   default=config_lib.DEFAULTS[field], help=meta["help"])


FIELD_OF: dict[str, str] = {
    "head_lr": "head_lr",
    "lr": "lr",
    "layerwise_decay": "layerwise_decay",
    "layer_decay": "layer_decay",
    "weight_decay": "weight_decay",
    "optimizer": "optimizer",
    "lr_schedule": "lr_schedule",
    "head_epochs": "head_epochs",
    "unfreeze_groups": "first",
    "unfreeze_every": "every",
    "unfreeze_per_step": "per_step",
    "bn_policy": "bn_policy",
    "label_smoothing": "label_smoothing",
    "mixup": "mixup",
    "cutmix": "cutmix",
    "loss_type": "loss_type",
    "focal_gamma": "focal_gamma",
    "strategy": "strategy",
}
"""Tunable short name -> `tlkit.FineTuneConfig` field (the search space names config fields;
the short names are the keras-tuner hyperparameter names).

Only three short names differ from their field: `unfreeze_groups` / `unfreeze_every` /
`unfreeze_per_step` for `first` / `every` / `per_step` (recipe keys `phases.first`, ...). They
stay because a hyperparameter name has no section to say what it is about (`first` alone reads as
nothing in `trials.md`), users' `tune.space` sections use them, and keras-tuner stores them in
every search folder that `tlkit tune` resumes; the recipe keys (`phases.first`) are accepted in
a space as well (`RECIPE_KEYS`)."""

_TUNABLES = tuple(from_field(name, field) for name, field in FIELD_OF.items()) + (
    # The head's dropout is a model setting, not a fine-tuning one.
    Tunable("dropout", "float", "head.dropout", 0.0, 1.0, high_open=True, default=0.2,
            help="dropout rate of the head"),
)

TUNABLE: dict[str, Tunable] = {t.name: t for t in _TUNABLES}
"""The parameters a fine-tuning search may tune, by short name."""

RECIPE_KEYS: dict[str, str] = {t.recipe_key: t.name for t in _TUNABLES}
"""Recipe key (`optimizer.lr`) -> short name (`lr`)."""

DEFAULTS: dict[str, object] = {t.name: t.default for t in _TUNABLES}
"""Values of the parameters a search does not tune (those of `tlkit.fine_tune` and recipes)."""

_SPEC_KEYS = ("min", "max", "step", "sampling", "log", "values", "choice", "default")


def canonical_name(name) -> str:
    """The short name of a tunable parameter given by short name or recipe key.

    Raises:
        ValueError: the name is not tunable (the message lists the tunable names).
    """
    if isinstance(name, str) and name in TUNABLE:
        return name
    if isinstance(name, str) and name in RECIPE_KEYS:
        return RECIPE_KEYS[name]
    known = sorted(TUNABLE) + sorted(RECIPE_KEYS)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"tune space: unknown parameter {name!r}.{hint} Expected one of {sorted(TUNABLE)} "
        f"(or the recipe keys {sorted(RECIPE_KEYS)})."
    )


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _fail(name, expected, received) -> ValueError:
    return ValueError(f"tune space: parameter {name!r}: expected {expected}. Received: {received}")


def _number(name, key, value, kind):
    """`value` as a float / int; YAML 1.1 reads `1e-4` as a string, so numeric strings count."""
    if isinstance(value, str) and re.fullmatch(
        r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value
    ):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, f"`{key}` a number", f"{key}={value!r}")
    if not math.isfinite(value):
        raise _fail(name, f"`{key}` a finite number", f"{key}={value!r}")
    if kind == "int":
        if float(value) != int(value):
            raise _fail(name, f"`{key}` an integer", f"{key}={value!r}")
        return int(value)
    return float(value)


def _value(tunable, value, where):
    """One value of a parameter, converted and checked against the parameter's bounds."""
    name = tunable.name
    if tunable.kind == "str":
        if value not in tunable.allowed:
            raise _fail(name, f"{where} {tunable.describe_bounds()}", repr(value))
        return value
    value = _number(name, where, value, tunable.kind)
    if not tunable.valid(value):
        raise _fail(name, f"{where} {tunable.describe_bounds()}", f"{where}={value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched parameter: a range (`min`..`max`, `step`, `sampling`) or a list of `values`.

    Build it with `SearchSpace.from_config`, which validates it.
    """

    name: str
    kind: str
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    sampling: str = "linear"
    values: tuple | None = None
    default: object = None

    def declare(self, hp):
        """Declares this parameter on a keras-tuner `HyperParameters`; returns its value."""
        if self.values is not None:
            return hp.Choice(self.name, list(self.values), default=self.default)
        if self.kind == "int":
            return hp.Int(self.name, self.min, self.max, step=self.step,
                          sampling=self.sampling, default=self.default)
        return hp.Float(self.name, self.min, self.max, step=self.step,
                        sampling=self.sampling, default=self.default)

    def contains(self, value) -> bool:
        """Whether `value` is a value this parameter can take."""
        if self.values is not None:
            return value in self.values
        return self.min - 1e-12 * abs(self.min) <= value <= self.max + 1e-12 * abs(self.max)

    def get_config(self) -> dict:
        if self.values is not None:
            config = {"values": list(self.values)}
        else:
            config = {"min": self.min, "max": self.max, "sampling": self.sampling}
            if self.step is not None:
                config["step"] = self.step
        if self.default is not None:
            config["default"] = self.default
        return config


def _param(name, spec) -> Param:
    tunable = TUNABLE[name]
    if isinstance(spec, (list, tuple)):
        spec = {"values": list(spec)}
    if not isinstance(spec, dict):
        raise _fail(name, "a mapping such as {min: .., max: ..} or {values: [...]}", repr(spec))
    unknown = [k for k in spec if k not in _SPEC_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), _SPEC_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(name, f"keys among {list(_SPEC_KEYS)}{hint}", f"unknown key {unknown[0]!r}")
    if "values" in spec and "choice" in spec:
        raise _fail(name, "either `values` or `choice`, not both", repr(spec))
    values = spec.get("values", spec.get("choice"))
    has_range = "min" in spec or "max" in spec
    if values is not None:
        if has_range or "step" in spec or "sampling" in spec or "log" in spec:
            raise _fail(name, "either a list of `values` or a range (min, max, step, log: true)",
                        repr(spec))
        if not isinstance(values, (list, tuple)) or not values:
            raise _fail(name, "`values` a non-empty list", f"values={values!r}")
        converted = tuple(_value(tunable, v, "values") for v in values)
        if len(set(converted)) != len(converted):
            raise _fail(name, "distinct `values`", f"values={list(values)!r}")
        default = None
        if "default" in spec:
            default = _value(tunable, spec["default"], "default")
            if default not in converted:
                raise _fail(name, f"`default` among the values {list(converted)}",
                            f"default={spec['default']!r}")
        return Param(name, tunable.kind, values=converted, default=default)
    if tunable.kind == "str":
        raise _fail(name, f"a list of `values` ({tunable.describe_bounds()})", repr(spec))
    if not ("min" in spec and "max" in spec):
        raise _fail(name, "both `min` and `max` (or a list of `values`)", repr(spec))
    low = _value(tunable, spec["min"], "min")
    high = _value(tunable, spec["max"], "max")
    if low > high:
        raise _fail(name, "min <= max", f"min={spec['min']!r}, max={spec['max']!r}")
    sampling = spec.get("sampling", "linear")
    if not isinstance(sampling, str) or sampling.lower() not in SAMPLINGS:
        raise _fail(name, f"`sampling` one of {list(SAMPLINGS)}", f"sampling={sampling!r}")
    sampling = sampling.lower()
    if "log" in spec:
        log = spec["log"]
        if not isinstance(log, bool):
            raise _fail(name, "`log` true or false", f"log={log!r}")
        if "sampling" in spec and (sampling == "log") != log:
            raise _fail(name, "`log` and `sampling` that agree",
                        f"log={log!r}, sampling={sampling!r}")
        if log:
            sampling = "log"
    if sampling in ("log", "reverse_log") and low <= 0:
        raise _fail(name, f"min > 0 with sampling={sampling!r}", f"min={spec['min']!r}")
    step = None
    if "step" in spec and spec["step"] is not None:
        step = _number(name, "step", spec["step"], tunable.kind)
        if sampling == "linear" and step <= 0:
            raise _fail(name, "`step` > 0", f"step={spec['step']!r}")
        if sampling != "linear" and step <= 1:
            raise _fail(name, f"`step` > 1 (a factor) with sampling={sampling!r}",
                        f"step={spec['step']!r}")
    elif tunable.kind == "int" and sampling == "linear":
        step = 1
    default = None
    if "default" in spec:
        default = _value(tunable, spec["default"], "default")
        if not low <= default <= high:
            raise _fail(name, f"`default` within [{_fmt(low)}, {_fmt(high)}]",
                        f"default={spec['default']!r}")
    return Param(name, tunable.kind, min=low, max=high, step=step, sampling=sampling,
                 default=default)


class SearchSpace:
    """A validated search space of fine-tuning hyperparameters.

    Args:
        params: the `Param`s (use `SearchSpace.from_config` to build them from a dict).

    Example:
    ```python
    space = tlkit.tuning.SearchSpace.from_config({
        "lr": {"min": 1e-5, "max": 1e-3, "sampling": "log"},
        "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
    })
    space.names  # ['lr', 'dropout']
    ```
    """

    def __init__(self, params):
        self.params: dict[str, Param] = {p.name: p for p in params}

    @classmethod
    def from_config(cls, config) -> SearchSpace:
        """Validates a space given as data (see the module docstring).

        Args:
            config: `{parameter: spec}`; parameters by short name or recipe key; a
                `SearchSpace` is returned as is.

        Returns:
            A `SearchSpace`.

        Raises:
            ValueError: empty space, unknown parameter, a parameter given twice (by both names),
                min > max, a bad `sampling` or `step`, values outside the parameter's valid
                range. The message names the parameter.
        """
        if isinstance(config, SearchSpace):
            return config
        if config is None or (isinstance(config, dict) and not config):
            raise ValueError(
                "tune space: the search space is empty. Give at least one parameter, e.g. "
                "{'lr': {'min': 1e-5, 'max': 1e-3, 'sampling': 'log'}}; tunable parameters: "
                f"{sorted(TUNABLE)}."
            )
        if not isinstance(config, dict):
            raise ValueError(
                f"tune space: expected a mapping {{parameter: spec}}. Received: {config!r}"
            )
        params, given = [], {}
        for key, spec in config.items():
            name = canonical_name(key)
            if name in given:
                raise ValueError(
                    f"tune space: parameter {name!r} is given twice (as {given[name]!r} and "
                    f"{key!r}); keep one."
                )
            given[name] = key
            params.append(_param(name, spec))
        return cls(params)

    def get_config(self) -> dict:
        """The normalized space (short names, explicit sampling) as plain data."""
        return {name: p.get_config() for name, p in self.params.items()}

    @property
    def names(self) -> list[str]:
        return list(self.params)

    def __contains__(self, name) -> bool:
        return name in self.params

    def __len__(self) -> int:
        return len(self.params)

    def __repr__(self):
        return f"SearchSpace({self.get_config()!r})"

    def __eq__(self, other):
        return isinstance(other, SearchSpace) and self.get_config() == other.get_config()

    def declare(self, hp) -> dict:
        """Declares every parameter on `hp` (keras-tuner `HyperParameters`); returns the values."""
        return {name: p.declare(hp) for name, p in self.params.items()}

    def contains(self, values: dict) -> bool:
        """Whether each searched parameter's value in `values` lies in the space."""
        return all(p.contains(values[name]) for name, p in self.params.items() if name in values)

    def fingerprint(self) -> str:
        """A short hash of the normalized space (parameter order does not matter)."""
        text = json.dumps(self.get_config(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def diff(self, other: SearchSpace) -> list[str]:
        """Human-readable differences from `other` to this space."""
        mine, theirs = self.get_config(), other.get_config()
        lines = [f"added {n}: {mine[n]}" for n in mine if n not in theirs]
        lines += [f"removed {n}: {theirs[n]}" for n in theirs if n not in mine]
        lines += [f"changed {n}: {theirs[n]} -> {mine[n]}" for n in mine
                  if n in theirs and mine[n] != theirs[n]]
        return lines


NEUTRAL: dict[str, float] = {"layerwise_decay": 1.0, "layer_decay": 1.0}
"""Settings whose null (off) a keras-tuner hyperparameter cannot hold: the search holds the
neutral value instead (1.0: one learning rate for all groups), and `config_value` turns it back
into null for `tlkit.FineTuneConfig`. The one place the two spellings meet."""


def config_value(name: str, value):
    """The `tlkit.FineTuneConfig` value of the search's `value` for `name`: `NEUTRAL` values
    (and null) become null, other values of those settings a float; the rest unchanged.

    Example: `config_value("layerwise_decay", 1.0)` is None, `config_value("layerwise_decay", 2)`
    is 2.0."""
    if name not in NEUTRAL:
        return value
    return None if value is None or float(value) == NEUTRAL[name] else float(value)


def check_fixed(values: dict) -> dict:
    """Validates values of non-searched parameters (`{short name or recipe key: value}`).

    Returns:
        `{short name: value}`. `None` is kept for `weight_decay` (no weight decay) and
        `head_lr` (ten times the trial's `lr`, the recipes' rule) and `unfreeze_groups` /
        `unfreeze_per_step` (groups spread evenly over the fine-tuning epochs) and `mixup` /
        `cutmix` (off); `layerwise_decay=None`
        and `layer_decay=None` become 1.0 (one LR for all groups).

    Raises:
        ValueError: unknown parameter or invalid value (the message names the parameter).
    """
    out = {}
    for key, value in (values or {}).items():
        name = canonical_name(key)
        if value is None and name in ("weight_decay", "head_lr", "unfreeze_groups",
                                      "unfreeze_per_step", "mixup", "cutmix"):
            out[name] = None
        elif value is None and name in NEUTRAL:
            out[name] = NEUTRAL[name]
        else:
            out[name] = _value(TUNABLE[name], value, "value")
    return out
