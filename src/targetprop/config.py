"""Run settings: one flat dataclass, loadable from YAML and overridable with
``key=value`` strings. Every name is checked before any work starts.

A setting whose default is ``None`` takes the default of the rule (or, for
``standardize``, of the kind of rule) that reads it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

__all__ = ["Config", "ConfigError", "load_config"]


class ConfigError(ValueError):
    """A setting that does not exist or has a bad value."""


@dataclass
class Config:
    # data
    data: str = "fashion-mnist"
    val_size: float = 0.1
    limit: int | None = None            # keep only this many training examples (quick runs)
    labels: int | None = None           # keep labels for this many training examples (balanced)
    use_unlabelled: bool = True         # with labels: train on the rest as unlabelled (y = -1)
    standardize: bool | None = None     # per-feature standardisation (None: yes, but not for generative rules)
    labelled_per_batch: int = 0         # with unlabelled data: labelled examples in every batch (0: as drawn)
    # network
    arch: str = "mlp:256x5"
    activation: str = "tanh"
    dropout: float = 0.0                # on every hidden layer's output, training mode only
    layer_hidden: int = 0               # > 0: every f_l and g_l is an MLP with a hidden layer this wide (§6)
    # rule
    rule: str = "dtp"
    target_step: float = 0.1            # η of the top target ĥ_L = h_L − η ∂ℓ/∂h_L
    feedback_noise: float = 0.1         # σ of the feedback objectives
    feedback_reg: float = 0.0           # λ of the DRL damping term
    shared_noise: bool = True           # layers of equal width share a step's noise sample
    # bengio2014 (Bengio 2014, Algorithm 5)
    alpha: float | None = None          # Eq. 19: 1 = joint target, 0 = discriminant (None: bengio2014 0,
                                        # generative image+label 1)
    credit_assignment: str = "strict"   # strict (no back-prop between layers) or hybrid
    label_hide: float = 0.5             # chance of hiding an observed label at the top input
    top_input_noise: float = 0.3        # σ of noise on h_{L-1} while the top auto-encoder trains
    corruption_sigma: str = "nn"        # auto-encoder corruption σ: nn (§2.2.5), a number, or one
                                        # per representation "σ_x,σ_1,...,σ_L" (input to top code)
    corruption_mask: float = 0.0        # masking-noise probability of that corruption
    propagation: str = "difference"     # bengio2014 long loop: difference, or tp (the paper; unstable)
    corrupt_encoder_input: bool = False  # bengio2014: also h_l a target for f_l(corrupt(h_{l-1}))
    recirculation_weight: float | None = None  # weight of the short loop's f_l(h̃_{l-1}) → h_l term
                                        # (the paper: 1; None: bengio2014 0, generative 1)
    discriminant: str = "reconstruction"  # bengio2014 step: reconstruction (Eq. 18) or gradient (Eq. 17)
    discriminant_step: float = 1.0      # bengio2014: scale of that step
    unlabelled_step: float = 1.0        # bengio2014: u of an unlabelled example's target h + u(ĥ − h)
    top_hidden: int | None = None       # > 0 makes the top encoder and decoder MLPs (None: bengio2014 0, generative 512)
    # generative stacks (Bengio 2014 §2, §4, §7: rules generative, generative-bp)
    modalities: str = "image"           # image, halves (top/bottom), or image+label
    top_prior: str = "dae"              # dae, linear, factorial, parzen, learned-noise
    top_width: int = 256                # code width h_L of a dae or learned-noise top
    top_sigma: float = 0.0              # corruption σ of the top level (0: nearest-neighbour, §2.2.5)
    modality_hide: float = 0.67         # fraction of training rows that hide one modality at the top input
    walk_back: int = 1                  # > 1: walk-back steps for the dae top (§2.2.4)
    top_criterion: str = "reconstruction"  # or nearest-neighbour (Eq. 15)
    layer_backprop: bool | None = None  # each layer's reconstruction error also trains f_l (§6)
                                        # (None: generative true, bengio2014 false)
    prior_weight: float = 0.1           # strength of the top prior's pull on the codes
    # schedule
    epochs: int = 3
    batch_size: int = 128
    feedback_schedule: str = "interleaved"   # or "alternating": a feedback epoch before each forward epoch
    feedback_iterations: int = 1        # feedback steps per batch when interleaved
    feedback_pretrain_epochs: int = 0   # feedback-only epochs before training starts
    # optimisation: any torch.optim optimizer / lr_scheduler by (case-insensitive) class name
    forward_optimizer: str = "adam"
    forward_lr: float = 1e-3
    forward_optimizer_args: dict = field(default_factory=dict)
    forward_scheduler: str = "none"
    forward_scheduler_args: dict = field(default_factory=dict)
    feedback_optimizer: str = "adam"
    feedback_lr: float = 1e-3
    feedback_optimizer_args: dict = field(default_factory=dict)
    feedback_scheduler: str = "none"
    feedback_scheduler_args: dict = field(default_factory=dict)
    # machinery
    seed: int = 0
    device: str = "auto"                # auto, cpu, cuda, cuda:N
    dtype: str = "float32"              # float32 or float64
    probe_size: int = 512               # examples in the fixed diagnostics batch
    threads: int = 0                    # CPU threads for torch (0: torch's default)
    progress: bool = True

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, values: dict[str, Any]) -> "Config":
        """A copy with ``values`` applied; unknown keys are an error listing the valid ones."""
        unknown = sorted(set(values) - set(self.keys()))
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(map(repr, unknown))}; "
                              f"valid settings: {', '.join(self.keys())}")
        merged = self.to_dict() | {k: _coerce(k, v, getattr(self, k)) for k, v in values.items()}
        return Config(**merged)

    def with_overrides(self, overrides: list[str]) -> "Config":
        """Apply ``key=value`` strings; values are parsed as YAML (``3``, ``1e-3``,
        ``true``, ``{momentum: 0.9}``)."""
        values = {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        return self.update(values)


def _declared_type(key: str) -> type:
    """The type a setting is declared with, ``X`` for ``X | None``."""
    hint = get_type_hints(Config)[key]
    return next((arg for arg in get_args(hint) if arg is not type(None)), hint)


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Accept ints for floats and check the type of everything else."""
    if value is None and default is None:
        return None
    kind = type(default) if default is not None else _declared_type(key)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. corruption_sigma=0.1 next to its non-numeric choice "nn"
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"setting {key!r} needs a {kind.__name__}, got {value!r}")
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                **values: Any) -> Config:
    """Defaults, then the YAML file, then keyword values, then ``key=value`` overrides."""
    config = Config()
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings")
        config = config.update(loaded)
    config = config.update({k: v for k, v in values.items() if v is not None})
    return config.with_overrides(overrides or [])
