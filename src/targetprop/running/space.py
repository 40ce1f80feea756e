"""A search-space file: the settings a sweep draws, and their ranges.

::

    shared:                     # every rule that reads the setting
      forward_lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      batch_size: {choices: [64, 128]}
    rules:                      # a rule's own, read when that rule is swept
      dtp:
        target_step: {low: 0.01, high: 1.0, log: true}
      ldrl:
        forward_scheduler: cosineannealinglr   # a plain value: fixed in every trial

A mapping with ``low`` and ``high`` is a range (uniform, or log-uniform with
``log: true``; whole numbers where the setting is an int), one with
``choices`` a choice; any other value is fixed. A shared setting the swept
rule does not read (``feedback_lr`` under ``bp``) is left out of its sweep,
so that every rule is searched over the same shared ranges; so are the
feedback weights' settings under a rule without feedback weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..registry import RULES, rule_settings
from .config import Config, ConfigError, run_settings
from .setup import validate_config

__all__ = ["Dimension", "SearchSpace", "load_space"]

# given by the sweep's own options, the same in every trial
_SWEEP_OWNS = ("rule", "data", "arch", "epochs", "seed", "val_size")
_RANGE_KEYS, _CHOICE_KEYS = {"low", "high", "log"}, {"choices"}


@dataclass(frozen=True)
class Dimension:
    """One setting a sweep draws: a range [low, high] (``integer`` for an
    int setting, ``log`` for log-uniform), or ``choices``."""
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple | None = None

    def suggest(self, trial) -> Any:
        """The value an Optuna trial draws."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, self.choices)
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        return f"{self.name} in [{self.low:g}, {self.high:g}]{' log' * self.log}"


@dataclass(frozen=True)
class SearchSpace:
    """What a sweep of one rule draws (``dimensions``) and holds fixed
    (``fixed``); ``unused``: shared settings the rule does not read."""
    dimensions: tuple[Dimension, ...]
    fixed: dict
    unused: tuple[str, ...]

    def describe(self) -> dict:
        """The space as JSON-ready data (kept with the study, to refuse a
        second call with another space)."""
        return {"fixed": self.fixed, "dimensions": [d.describe() for d in self.dimensions]}


def load_space(path: str | Path, rule: str, base: Config) -> SearchSpace:
    """The search space of ``rule`` in the file ``path``; every name, range
    and value is checked against the settings' declarations (both ends of a
    range, every choice) on top of the run's settings ``base``."""
    where = f"search space {path}"
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{where}: cannot read it: {error}") from None
    if not isinstance(raw, dict) or not set(raw) <= {"shared", "rules"}:
        raise ConfigError(f"{where}: a mapping with sections 'shared' (every rule) and 'rules' (each rule's own)")
    shared, own = raw.get("shared") or {}, raw.get("rules") or {}
    if not isinstance(shared, dict) or not isinstance(own, dict):
        raise ConfigError(f"{where}: 'shared' and 'rules' are mappings")
    unknown_rules = sorted(set(own) - set(RULES))
    if unknown_rules:
        raise ConfigError(f"{where}: unknown rule(s) {', '.join(unknown_rules)} under 'rules'; rules: {', '.join(RULES)}")
    mine = own.get(rule) or {}
    if not isinstance(mine, dict):
        raise ConfigError(f"{where}: rules.{rule} is a mapping of settings")

    known = set(run_settings()) | {name for r in RULES for name in rule_settings(r)}
    readable = _read_by(rule)
    for section, names, allowed in (("shared", shared, known), (f"rules.{rule}", mine, readable)):
        for name in names:
            if name in _SWEEP_OWNS:
                raise ConfigError(f"{where}: {section}.{name} is given by the sweep's own options "
                                  f"(--{name.replace('_', '-')} or --set), the same in every trial")
            if name not in allowed:
                owner = "" if section == "shared" else f" of rule {rule}"
                raise ConfigError(f"{where}: {section}.{name} is not a setting{owner}; "
                                  f"targetprop rules {rule} lists them")
    entries = {name: value for name, value in shared.items() if name in readable} | mine
    dimensions, fixed = [], {}
    for name, value in entries.items():
        dimension = _dimension(name, value, where)
        if dimension is None:
            fixed[name] = value
        else:
            dimensions.append(dimension)
    _check_values(dimensions, fixed, base, where)
    return SearchSpace(tuple(dimensions), fixed, tuple(sorted(set(shared) - readable)))


def _read_by(rule: str) -> set[str]:
    """The settings that change a run of ``rule``: its own and the run-level
    ones, less the feedback weights' where it has none."""
    run = set(run_settings())
    if not RULES[rule].cls.uses_feedback:
        run = {name for name in run if not name.startswith("feedback_")}
    return run | set(rule_settings(rule))


def _dimension(name: str, value: Any, where: str) -> Dimension | None:
    """The dimension ``value`` describes, or None for a fixed value."""
    if not isinstance(value, dict) or not set(value) & (_RANGE_KEYS | _CHOICE_KEYS):
        return None
    keys = set(value)
    if keys <= _CHOICE_KEYS:
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: {name}.choices is an empty list; give at least one value")
        return Dimension(name, choices=tuple(choices))
    if not keys <= _RANGE_KEYS or not {"low", "high"} <= keys:
        raise ConfigError(f"{where}: {name} is a range {{low: L, high: H[, log: true]}} or {{choices: [...]}}, "
                          f"got keys {', '.join(sorted(keys))}")
    low, high = (_number(value[k], f"{name}.{k}", where) for k in ("low", "high"))
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: {name}.log is true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: {name} is an empty or inverted range [{low:g}, {high:g}]: low must be "
                          "below high (a fixed value is written as the value itself)")
    if log and low <= 0:
        raise ConfigError(f"{where}: {name} is log-uniform, so low must be > 0, got {low:g}")
    spec = run_settings().get(name) or next(rule_settings(r)[name] for r in RULES if name in rule_settings(r))
    if spec.type is not int:
        return Dimension(name, low, high, log)
    if not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{where}: {name} is a whole number: its range needs whole ends, got [{low:g}, {high:g}]")
    return Dimension(name, int(low), int(high), log, integer=True)


def _number(value: Any, what: str, where: str) -> float:
    try:  # YAML reads 1e-3 (no dot) as a string
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {what} is a number, got {value!r}") from None
    if isinstance(value, bool) or number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{where}: {what} is a finite number, got {value!r}")
    return number


def _check_values(dimensions: list[Dimension], fixed: dict, base: Config, where: str) -> None:
    """Every value a trial can take passes the run's own checks (types,
    bounds, choices, the rule's and the optimizers' demands)."""
    ends = [{d.name: v} for d in dimensions for v in (d.choices or (d.low, d.high))]
    for values in ends or [{}]:
        try:
            validate_config(base.update(fixed | values))
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
