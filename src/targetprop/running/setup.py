"""From settings to the objects of a run: the checked configuration, the
device, the data (with its labels kept or dropped), the rule, the network
and its optimizers. Every name and range is checked before any work starts.
"""
from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..core.architectures import ArchitectureSpec, parse_architecture
from ..core.learner import Learner
from ..core.layers import UNBOUNDED
from ..core.networks import he_init
from ..core.rule import Rule
from ..core.settings import current
from ..registry import build_network, make_rule, network_kind, require_kind, wrap_for
from . import optim
from .config import GIVEN, Config, ConfigError
from .data import DataInfo, DataSplits, check_data, keep_labels, load_dataset
from .metrics import parse_stop_when
from .tensorboard import check_tensorboard

__all__ = ["DTYPES", "PRECISIONS", "RunParts", "read_every_state", "validate_config", "resolve_device", "load_splits",
           "keep_labelled", "network_options", "build_run_network", "build_parts", "signal_numbers"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRECISIONS = {"float32": None, "bf16": torch.bfloat16}  # the autocast dtype of the training step
# Run-level settings that only a rule with feedback maps reads, and those that
# only a rule with a feedback loss of its own (feedback steps apart) reads.
FEEDBACK_SETTINGS = ("feedback_optimizer", "feedback_lr", "feedback_optimizer_args",
                     "feedback_scheduler", "feedback_scheduler_args", "feedback_clip_norm")
FEEDBACK_STEP_SETTINGS = ("feedback_schedule", "feedback_iterations", "feedback_pretrain_epochs")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def validate_config(config: Config) -> Config:
    """Check every name and range in ``config``; returns it with the rule's
    settings resolved (every setting the rule declares, defaults included)."""
    try:
        if not config.data.startswith(GIVEN):
            check_data(config.data, config.data_root)
        rule = make_rule(config.rule, **config.rule_settings)  # the rule checks its own settings
        if uses_unlabelled(config, rule) and rule.semi_supervised_defaults:
            rule = make_rule(config.rule, **(rule.semi_supervised_defaults | config.rule_settings))
        if not config.arch.startswith(GIVEN):
            _check_architecture(config, rule, parse_architecture(config.arch))
        for prefix in ("forward", "feedback"):
            optim.check_arguments(prefix, *(getattr(config, f"{prefix}_{key}") for key in
                                            ("optimizer", "lr", "optimizer_args", "scheduler", "scheduler_args")),
                                  config.epochs)
        resolve_device(config.device)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    _check_rule_fits(config, rule)
    if config.labelled_per_batch is None:  # an eighth of every batch labelled, where some are not
        mixed = config.batch_size // 8 if uses_unlabelled(config, rule) else 0
        config = dataclasses.replace(config, labelled_per_batch=mixed)
    _check_ranges(config)
    return dataclasses.replace(config, rule_settings=current(rule))


def _check_architecture(config: Config, rule: Rule, spec: ArchitectureSpec) -> None:
    """The rule trains a kind of network that ``spec`` builds; where the
    builder needs no data of its own, a network of that shape, never
    allocated, on roomy inputs (sequences for a recurrent net, RGB images
    otherwise) checks the options and the rule's own demands; build_parts
    checks the architecture against the data's own shape."""
    require_kind(rule, spec)
    if spec.name == "file":
        return  # the user's code runs once, on the data's shape
    roomy = {"recurrent": (8, 4), "recursive": (8, 7)}.get(spec.family, (3, 256, 256))
    with torch.device("meta"):
        build_network(spec, roomy, 2, rule, **network_options(config))


def network_options(config: Config) -> dict:
    """The network options that ``config`` sets (those left at their defaults are the builders' own)."""
    defaults = Config()
    return {key: getattr(config, key) for key in ("activation", "dropout", "layer_hidden", "normalization")
            if getattr(config, key) != getattr(defaults, key)}


def signal_numbers(names: str) -> list[int]:
    """``"INT,TERM"`` as signal numbers (ConfigError for a name that is not a signal here)."""
    numbers = []
    for name in filter(None, (n.strip().upper().removeprefix("SIG") for n in names.split(","))):
        if not isinstance(getattr(signal, f"SIG{name}", None), signal.Signals) or name in ("KILL", "STOP"):
            raise ConfigError(f"setting 'stop_signals': {name!r} is not a signal a run can catch "
                              "(INT, TERM, USR1, USR2, HUP, ...)")
        numbers.append(int(getattr(signal, f"SIG{name}")))
    return numbers


def _check_ranges(config: Config) -> None:
    """What the settings' own bounds (``setting(at_least=, above=)``) cannot say."""
    if not (config.val_size < 1 or config.val_size == int(config.val_size)):
        raise ConfigError(f"setting 'val_size' is a fraction in (0, 1) or a whole count of examples, "
                          f"got {config.val_size}")
    signal_numbers(config.stop_signals)
    if config.stop_when is not None:
        try:
            parse_stop_when(config.stop_when)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if (config.stop_when or config.stop_patience) and not config.val_size:
        raise ConfigError("settings 'stop_when' and 'stop_patience' read the validation split: set val_size > 0")
    if config.log == "tensorboard":
        check_tensorboard()
    if 0 < config.divergence_factor <= 1:
        raise ConfigError(f"setting 'divergence_factor' must be > 1 (a loss grown this many times), or 0 to "
                          f"stop on NaN or infinity only; got {config.divergence_factor}")
    if config.precision != "float32" and config.dtype != "float32":
        raise ConfigError(f"precision={config.precision} autocasts float32 work: it needs dtype=float32")
    if config.init == "he" and not config.arch.startswith(GIVEN) and parse_architecture(config.arch).family in (
            "recurrent", "recursive"):
        raise ConfigError("init=he is for chains of layers; a recurrent or tree net starts from orthogonal "
                          "weights (use init=auto)")
    if (config.init == "orthogonal" and not config.arch.startswith(GIVEN)
            and parse_architecture(config.arch).arguments.get("cell") != "rnn"):
        raise ConfigError("init=orthogonal starts a recurrent net (rnn:); use init=auto or he")
    if not 0 <= config.dropout < 1:
        raise ConfigError("setting 'dropout' must lie in [0, 1)")
    if not 0 <= config.labelled_per_batch < config.batch_size:
        raise ConfigError(f"setting 'labelled_per_batch' must lie in 0..{config.batch_size - 1}")


def _check_rule_fits(config: Config, rule: Rule) -> None:
    """Run-level settings that the chosen rule would not read are errors too."""
    defaults = Config()
    unread = [] if rule.uses_feedback else list(FEEDBACK_SETTINGS)
    if not (rule.uses_feedback and rule.separate_feedback):
        unread += FEEDBACK_STEP_SETTINGS
    changed = [k for k in unread if getattr(config, k) != getattr(defaults, k)]
    if changed:
        why = "has no feedback maps" if not rule.uses_feedback else "has no feedback steps of its own"
        raise ConfigError(f"rule {config.rule!r} {why}: it does not read {', '.join(map(repr, changed))}")
    if config.use_unlabelled and not rule.handles_unlabelled:
        raise ConfigError(f"rule {config.rule!r} cannot learn from unlabelled examples; leave "
                          "use_unlabelled unset to train on the labelled ones alone")
    if config.use_unlabelled is not None and config.labels is None:
        raise ConfigError("setting 'use_unlabelled' needs labels=N (the number of labelled examples)")
    if config.labelled_per_batch and not uses_unlabelled(config, rule):
        raise ConfigError("setting 'labelled_per_batch' mixes labelled and unlabelled examples: "
                          "it needs labels=N and a rule that learns from unlabelled examples")


def uses_unlabelled(config: Config, rule: Rule) -> bool:
    """Whether the run trains on unlabelled examples (by default: when the rule can)."""
    if config.labels is None:
        return False
    return rule.handles_unlabelled if config.use_unlabelled is None else config.use_unlabelled


def load_splits(config: Config, rule: Rule) -> DataSplits:
    """The run's data: its split, standardised unless ``standardize`` or the
    rule says otherwise (generative stacks see features in [0, 1], where
    their samples are images and their Parzen estimates are comparable)."""
    if config.data.startswith(GIVEN):
        raise ConfigError(f"this run trained on data handed in as objects ({config.data.removeprefix(GIVEN)}): "
                          "there is nothing to load")
    standardize = rule.standardize_inputs if config.standardize is None else config.standardize
    val_size = int(config.val_size) if config.val_size >= 1 else config.val_size
    try:
        splits = load_dataset(config.data, val_size=val_size, seed=config.seed, dtype=DTYPES[config.dtype],
                              limit=config.limit, standardize=standardize, root=config.data_root,
                              seq_len=config.seq_len, tree_depth=config.tree_depth,
                              sequence_form=config.sequence_form)
    except ValueError as error:  # the data's own shapes, dtypes or labels
        raise ConfigError(str(error)) from None
    if splits.num_classes == 0 and not rule.learns_real_targets(_kind(config, rule)):
        raise ConfigError(f"{config.data} has real targets (regression); rule {config.rule!r} learns class "
                          "labels: use bp, tp, dtp, drl or ldrl (or bengio2014 on an rnn: net)")
    if config.augment != "none" and splits.image_shape is None:
        raise ConfigError(f"augment={config.augment} needs images; {config.data} holds flat features")
    return splits


def _kind(config: Config, rule: Rule) -> str | None:
    """The kind of network the run trains (None for a network given as an object: its own)."""
    return None if config.arch.startswith(GIVEN) else network_kind(rule, parse_architecture(config.arch))


def keep_labelled(splits: DataSplits, config: Config, rule: Rule) -> str:
    """Semi-supervised data: labels for ``config.labels`` training examples;
    the rest unlabelled (y = -1) or, where the run does not use unlabelled
    examples, dropped. Returns one line that says which."""
    x, y = splits.train.tensors
    try:
        y = keep_labels(y, config.labels, splits.num_classes, seed=config.seed)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    labelled = int((y >= 0).sum())
    if uses_unlabelled(config, rule):
        note = f"{labelled} labelled and {len(y) - labelled} unlabelled training examples"
    else:
        x, y = x[y >= 0], y[y >= 0]
        note = (f"{labelled} labelled training examples (rule {config.rule!r} does not learn from "
                "unlabelled ones: the rest are left out)")
    splits.train = TensorDataset(x, y)
    return note


def read_every_state(net: nn.Module, rule: Rule, data: str) -> None:
    """For ``data`` with a target at every step of a sequence: the read-out
    reads every state (ValueError if ``net`` has no states or ``rule`` cannot train it so)."""
    if not hasattr(net, "every_state"):
        raise ValueError(f"{data} has a target at every step of a sequence: it needs a recurrent "
                         "net (--arch rnn:WIDTH or gru:WIDTH)")
    net.every_state = True
    rule.check_network(net)


@dataclass
class RunParts:
    net: nn.Module
    learner: Learner
    schedulers: dict


def build_run_network(config: Config, rule: Rule, info: DataInfo, targets_per_step: bool = False,
                      net: nn.Module | None = None) -> nn.Module:
    """The run's network, on the CPU in the run's dtype: ``net`` if given
    (wrapped into blocks where it is a plain ``nn.Sequential``), else built
    from ``config.arch`` for ``rule`` on ``info``'s examples; checked by the
    rule, its forward maps initialised as ``config.init`` says."""
    try:
        if net is None:
            spec = parse_architecture(config.arch)
            if (info.tree_shape is not None) != (spec.family == "recursive"):
                raise ValueError(f"{config.data} holds trees: it needs a tree net (--arch tree:WIDTH)"
                                 if info.tree_shape is not None else
                                 f"{spec.text} is a tree net: it reads tree data (--data listops, or a file "
                                 "of bracketed trees, NAME.trees)")
            net = build_network(spec, info.input_shape, info.num_outputs, rule, **network_options(config))
            auto_he = spec.entry.he_init and config.activation in UNBOUNDED
        else:
            unread = sorted(network_options(config))
            if unread:
                raise ValueError(f"setting(s) {', '.join(map(repr, unread))} shape the networks targetprop builds; "
                                 "a model of your own keeps what its code made (add the modules to it)")
            net = wrap_for(rule, net, info.input_shape, info.num_outputs)
            auto_he = False  # a network of the user's own keeps the initialisation its code gave it
        if targets_per_step:
            read_every_state(net, rule, config.data)
    except ValueError as error:  # the network does not fit these data, or this rule
        raise ConfigError(str(error)) from None
    if config.init == "he" or (config.init == "auto" and auto_he):
        he_init(net)
    elif config.init == "orthogonal":
        if not hasattr(net, "orthogonal_init"):
            raise ConfigError("init=orthogonal starts a recurrent net (rnn:); use init=auto or he")
        net.orthogonal_init()
    return net.to(dtype=DTYPES[config.dtype])


def build_parts(config: Config, rule: Rule, info: DataInfo, targets_per_step: bool, device: torch.device,
                net: nn.Module | None = None) -> RunParts:
    """The network on ``device`` (``build_run_network``), its forward and
    feedback optimizers (the latter only for a rule with feedback maps), the
    learner and the schedulers."""
    net = build_run_network(config, rule, info, targets_per_step, net).to(device)
    forward_opt = optim.make_optimizer(config.forward_optimizer, net.forward_parameters(),
                                       config.forward_lr, **config.forward_optimizer_args)
    feedback_opt = None
    if rule.uses_feedback and net.feedback_parameters():
        feedback_opt = optim.make_optimizer(config.feedback_optimizer, net.feedback_parameters(),
                                            config.feedback_lr, **config.feedback_optimizer_args)
    interleaved = config.feedback_schedule == "interleaved"
    try:
        learner = Learner(net, rule, forward_opt, feedback_opt,
                          config.feedback_iterations if interleaved and feedback_opt else 0,
                          precision=PRECISIONS[config.precision], compile=config.compile,
                          clip_norms=(config.forward_clip_norm, config.feedback_clip_norm))
    except ValueError as error:  # compile on a net it cannot trace
        raise ConfigError(str(error)) from None
    schedulers = {
        "forward": optim.make_scheduler(config.forward_scheduler, forward_opt, config.epochs,
                                        **config.forward_scheduler_args),
        "feedback": (optim.make_scheduler(config.feedback_scheduler, feedback_opt, config.epochs,
                                          **config.feedback_scheduler_args) if feedback_opt else None),
    }
    return RunParts(net, learner, schedulers)
