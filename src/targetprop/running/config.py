"""Run settings, loadable from YAML and overridable with ``key=value`` strings.

Two kinds of setting share one flat namespace, as they do on the command line
and in YAML files:

* run-level settings (data, network, schedule, optimisation, machinery), the
  fields of :class:`Config`, each declared with its type, default and
  meaning;
* the rule's own settings (``target_step``, ``alpha``, ...), declared by the
  rule (``targetprop rules NAME`` lists them). They are kept in
  ``Config.rule_settings`` and checked against the chosen rule by
  :func:`targetprop.registry.make_rule`: a setting the rule does not read is
  an error that names it.

A run-level setting whose default is ``None`` takes the choice of the rule
that runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.architectures import architecture_help
from ..core.settings import SettingError, coerce, declared, setting
from ..registry import RULES, rule_settings

__all__ = ["GIVEN", "Config", "ConfigError", "load_config", "run_settings"]

# ``arch`` of a run whose network was handed in as an object (``Trainer(net=...)``, ``fit``): no spec rebuilds it
GIVEN = "given:"


class ConfigError(ValueError):
    """A setting that does not exist or has a bad value."""


@dataclass
class Config:
    # data
    data: str = setting("fashion-mnist", "dataset: fashion-mnist, mnist-5k, digits or mnist1d; sequences: "
                        "fashion-mnist-rows, mnist-5k-pixels, adding, temporal-order, temporal-order-3, "
                        "permutation, copy; trees: listops; or your own: "
                        "path/to/file.npz (arrays x, y, optional x_test, y_test), path/to/file.trees "
                        "(bracketed trees, LABEL (TOKEN CHILD CHILD) a line), imagefolder:DIR "
                        "(a sub-folder per class) or cifar10 (python batches in data_root)")
    data_root: str | None = setting(None, "folder of the dataset's files: fashion-mnist's IDX files "
                                    "(default /usr/share/datasets/fashion-mnist) or CIFAR-10's batches")
    seq_len: int = setting(60, "length T of a generated sequence task (adding, temporal-order, "
                           "temporal-order-3, permutation, copy)", at_least=1)
    sequence_form: str = setting("default", "the form of a generated sequence task: default (as Data describes) "
                                 "or pascanu2013, the generators of Pascanu et al. (2013) that Manchev and "
                                 "Spratling (2020) train on (adding, temporal-order, temporal-order-3, "
                                 "permutation)", ("default", "pascanu2013"))
    tree_depth: int = setting(5, "depth of the generated trees of listops (the root's distance to its "
                              "deepest leaf)", at_least=1)
    augment: str = setting("none", "training images only: crop (random crop after 4-pixel zero padding), "
                           "flip (horizontal, half the images) or crop-flip", ("none", "crop", "flip", "crop-flip"))
    val_size: float = setting(0.1, "validation split: a fraction in (0, 1) of the training set, a whole "
                              "count of examples, or 0 (none: no best checkpoint)", at_least=0)
    limit: int | None = setting(None, "keep only this many training examples (quick runs)", at_least=1)
    labels: int | None = setting(None, "keep labels for this many training examples (balanced over classes)",
                                 at_least=1)
    use_unlabelled: bool | None = setting(None, "with labels: train on the rest as unlabelled (y = -1); "
                                          "default: when the rule learns from unlabelled examples")
    standardize: bool | None = setting(None, "per-feature standardisation (default: the rule's choice)")
    labelled_per_batch: int | None = setting(None, "with unlabelled data: labelled examples in every batch "
                                             "(0: as drawn; default: an eighth of the batch)", at_least=0)
    # network
    arch: str = setting("mlp:256x5", "architecture: " + architecture_help())
    activation: str = setting("tanh", "activation of every layer: tanh, relu, elu, leaky-relu, sigmoid, "
                              "linear; or discrete units that send sign(tanh), step(sigmoid) or a "
                              "bernoulli(sigmoid) sample to the layer above")
    init: str = setting("auto", "forward weights at the start: he (N(0, 2/fan_in), He et al. 2015), "
                        "torch (as built: PyTorch's default, or what a preset or your own model's code sets) "
                        "or auto (he for mlp: and cnn: nets of relu, leaky-relu or elu units, else torch); "
                        "orthogonal: an rnn: net's W, U, V and read-out each a random orthogonal matrix "
                        "(Manchev and Spratling 2020)", ("auto", "he", "torch", "orthogonal"))
    dropout: float = setting(0.0, "dropout on every hidden layer's output, training mode only")
    layer_hidden: int = setting(0, "> 0: every f_l and g_l is an MLP with a hidden layer this wide (§6)",
                                at_least=0)
    normalization: str = setting("none", "mlp: a norm in every layer before its activation, act(N(W h + b)): "
                                 "batch (BatchNorm1d), layer (LayerNorm) or none", ("none", "batch", "layer"))
    # rule
    rule: str = setting("dtp", "training rule (targetprop rules lists them)")
    # schedule
    epochs: int = setting(3, "training epochs", at_least=1)
    batch_size: int = setting(128, "examples per batch", at_least=1)
    feedback_schedule: str = setting("interleaved", "interleaved (feedback steps in every batch) or "
                                     "alternating (a feedback epoch before each forward epoch)",
                                     ("interleaved", "alternating"))
    feedback_iterations: int = setting(1, "feedback steps per batch when interleaved", at_least=0)
    feedback_pretrain_epochs: int = setting(0, "feedback-only epochs before training starts", at_least=0)
    # optimisation: any torch.optim optimizer / lr_scheduler by (case-insensitive) class name
    forward_optimizer: str = setting("adam", "torch.optim optimizer of the forward weights (class name)")
    forward_lr: float = setting(1e-3, "its learning rate", above=0)
    forward_optimizer_args: dict = setting({}, "its other arguments, e.g. {weight_decay: 1e-4}")
    forward_scheduler: str = setting("none", "torch.optim.lr_scheduler of the forward weights (class name)")
    forward_scheduler_args: dict = setting({}, "its arguments")
    forward_clip_norm: float = setting(0.0, "> 0: the forward weights' gradient scaled down to this global "
                                       "norm before each step (across layers: not layer-local)", at_least=0)
    feedback_optimizer: str = setting("adam", "torch.optim optimizer of the feedback weights")
    feedback_lr: float = setting(1e-3, "its learning rate", above=0)
    feedback_optimizer_args: dict = setting({}, "its other arguments")
    feedback_scheduler: str = setting("none", "lr_scheduler of the feedback weights")
    feedback_scheduler_args: dict = setting({}, "its arguments")
    feedback_clip_norm: float = setting(0.0, "> 0: the feedback weights' gradient scaled down to this global "
                                        "norm before each step", at_least=0)
    # machinery
    seed: int = setting(0, "random seed", at_least=0)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    dtype: str = setting("float32", "float32 or float64", ("float32", "float64"))
    precision: str = setting("float32", "bf16: the training step's forward pass, targets and losses under "
                             "autocast to bfloat16 (weights and optimizer state stay in dtype)",
                             ("float32", "bf16"))
    compile: bool = setting(False, "torch.compile the rule's part of the training step (forward pass, "
                            "targets, losses and their backward pass); the first steps pay the compile time")
    probe_size: int = setting(512, "examples in the fixed diagnostics batch", at_least=1)
    stop_when: str | None = setting(None, "stop early, the run complete, once a validation metric reaches a "
                                    "value: METRIC>=VALUE or METRIC<=VALUE (val_acc>=1: every validation "
                                    "example right; val_solved>=1 on adding)")
    stop_patience: int = setting(0, "stop early once the validation score has not improved for this many "
                                 "epochs (0: never)", at_least=0)
    divergence_factor: float = setting(1e3, "stop when a training loss grows to this many times its "
                                       "starting scale, > 1 (0: stop on NaN or infinity only)", at_least=0)
    threads: int = setting(0, "CPU threads for torch (0: torch's default)", at_least=0)
    flush_denormal: bool = setting(True, "CPU: subnormal floats count as zero (BPTT's vanishing gradients "
                                   "made an update at T = 400 8-15x slower without it)")
    progress: bool = setting(True, "progress bar on a terminal")
    log: str = setting("none", "tensorboard: also write every per-epoch score as TensorBoard event files in "
                       "the run directory (needs the tensorboard package)", ("none", "tensorboard"))
    stop_signals: str = setting("INT,TERM", "signals that stop the run at the next step with a checkpoint "
                                "saved, exit code 128 + the signal's number (add USR1 for a scheduler's "
                                "pre-emption warning); a second Ctrl-C stops at once")
    # the chosen rule's own settings, checked against its declaration (registry.make_rule)
    rule_settings: dict = field(default_factory=dict)

    @classmethod
    def keys(cls) -> list[str]:
        return list(run_settings())

    def to_dict(self) -> dict[str, Any]:
        """Every setting in one flat mapping, as YAML files and ``--set`` write them."""
        out = {key: getattr(self, key) for key in self.keys()}
        return out | dict(self.rule_settings)

    def update(self, values: dict[str, Any]) -> "Config":
        """A copy with ``values`` applied: run-level settings are checked here,
        the others are kept as the rule's settings; a name no rule declares
        is an error."""
        specs = run_settings()
        known_to_rules = {name for rule in RULES for name in rule_settings(rule)}
        unknown = sorted(set(values) - set(specs) - known_to_rules)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(map(repr, unknown))}; run-level settings: "
                              f"{', '.join(specs)}; a rule's own: targetprop rules NAME")
        try:
            run = {k: coerce(specs[k], v) for k, v in values.items() if k in specs}
        except SettingError as error:
            raise ConfigError(str(error)) from None
        rule = {k: v for k, v in values.items() if k not in specs}
        return dataclasses.replace(self, **run, rule_settings=self.rule_settings | rule)

    def with_overrides(self, overrides: list[str]) -> "Config":
        """Apply ``key=value`` strings; values are parsed as YAML (``3``, ``1e-3``,
        ``true``, ``{momentum: 0.9}``)."""
        values = {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            try:
                values[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError as error:
                where = f" ({error.problem})" if getattr(error, "problem", None) else ""
                raise ConfigError(f"--set {key.strip()}: {raw!r} is not a YAML value{where}") from None
        return self.update(values)


def run_settings():
    """The run-level settings (name → declaration)."""
    return declared(Config)


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
