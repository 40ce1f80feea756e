"""Settings that belong to their owner.

A rule (or the run) declares each setting it reads in one place: a dataclass
field made by :func:`setting`, with its type (the annotation), its default
and a one-line meaning. Values that come from YAML files or ``key=value``
strings are checked against that declaration: a name the owner does not
declare is an error that lists what it does take, a value of the wrong type
or outside its choices or bounds (a float must also be finite) is an error
naming the setting.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, get_args, get_type_hints

__all__ = ["SettingError", "Declared", "setting", "declared", "coerce", "build", "check", "current"]


class SettingError(ValueError):
    """A setting that its owner does not declare, or a value it cannot take."""


def setting(default: Any, help: str, choices: tuple | None = None, *, at_least: float | None = None,
            above: float | None = None) -> Any:
    """A dataclass field that declares a setting (mutable defaults are copied);
    ``at_least`` and ``above`` bound a number from below (≥ and >)."""
    metadata = {"help": help, "choices": choices, "at_least": at_least, "above": above}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Declared:
    name: str
    type: type
    optional: bool          # None is a value (it means: the owner decides)
    default: Any
    help: str
    choices: tuple | None
    at_least: float | None = None
    above: float | None = None

    @property
    def bound(self) -> str:
        """The lower bound in words ('' when there is none)."""
        if self.above is not None:
            return f"> {self.above:g}"
        return "" if self.at_least is None else f">= {self.at_least:g}"

    def describe(self) -> str:
        kind = " | ".join(c for c in self.choices) if self.choices else self.type.__name__
        kind += f" {self.bound}" if self.bound else ""
        return f"{self.name} ({kind}, default {self.default!r}): {self.help}"


def declared(cls: type) -> dict[str, Declared]:
    """The settings that the dataclass ``cls`` declares, in field order."""
    hints = get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init or "help" not in f.metadata:
            continue
        args = [a for a in get_args(hints[f.name]) if a is not type(None)]
        kind = args[0] if args else hints[f.name]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out[f.name] = Declared(f.name, kind, len(args) < len(get_args(hints[f.name])), default,
                               f.metadata["help"], f.metadata["choices"], f.metadata.get("at_least"),
                               f.metadata.get("above"))
    return out


def coerce(spec: Declared, value: Any) -> Any:
    """``value`` as the declared type: ints pass for floats, numbers for
    strings (``corruption_sigma=0.1`` next to ``nn``), numeric strings for
    floats (YAML reads ``1e-3`` as a string); anything else must match."""
    if value is None and spec.optional:
        return None
    kind, number = spec.type, isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is float and number:
        value = float(value)
    elif kind is str and number:
        value = str(value)
    elif kind is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SettingError(f"setting {spec.name!r} needs a {kind.__name__}, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise SettingError(f"unknown {spec.name} {value!r}; choose one of: {', '.join(spec.choices)}")
    if kind is float and not math.isfinite(value):
        raise SettingError(f"setting {spec.name!r} needs a finite number, got {value!r}")
    if ((spec.above is not None and not value > spec.above)
            or (spec.at_least is not None and not value >= spec.at_least)):
        raise SettingError(f"setting {spec.name!r} must be {spec.bound}, got {value!r}")
    return value


def build(cls: type, owner: str, values: dict[str, Any], **wired: Any) -> Any:
    """``cls(**wired, **values)`` once every key of ``values`` is a setting
    that ``cls`` declares and every value fits its declaration."""
    specs = declared(cls)
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise SettingError(f"{owner} does not read setting(s) {', '.join(map(repr, unknown))}; "
                           f"it takes: {', '.join(specs) or 'none'}")
    return cls(**wired, **{key: coerce(specs[key], value) for key, value in values.items()})


def check(obj: Any) -> None:
    """Check every declared setting of ``obj`` (its type and choices), also
    when the dataclass was built directly rather than by :func:`build`."""
    for spec in declared(type(obj)).values():
        coerce(spec, getattr(obj, spec.name))


def current(obj: Any) -> dict[str, Any]:
    """The values of the settings ``obj`` declares."""
    return {name: getattr(obj, name) for name in declared(type(obj))}
