"""From settings to the objects of a run: the checked configuration, the
device, the data (with its labels kept or dropped), the rule, the network
and its optimizers. Every name and range is checked before any work starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from ..core.learner import Learner
from ..core.layers import UNBOUNDED
from ..core.networks import he_init
from ..core.recurrent import RecurrentNetwork, is_recurrent_spec
from ..core.rule import Rule
from ..core.settings import current
from ..registry import make_rule
from . import optim
from .config import Config, ConfigError
from .data import DataSplits, check_data, keep_labels, load_dataset

__all__ = ["DTYPES", "PRECISIONS", "RunParts", "read_every_state", "validate_config", "resolve_device", "load_splits", "keep_labelled",
           "build_parts"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRECISIONS = {"float32": None, "bf16": torch.bfloat16}  # the autocast dtype of the training step
# Run-level settings that only a rule with feedback maps reads, and those that
# only a rule with a feedback loss of its own (feedback steps apart) reads.
FEEDBACK_SETTINGS = ("feedback_optimizer", "feedback_lr", "feedback_optimizer_args",
                     "feedback_scheduler", "feedback_scheduler_args")
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
        check_data(config.data, config.data_root)
        rule = make_rule(config.rule, **config.rule_settings)  # the rule checks its own settings
        if uses_unlabelled(config, rule) and rule.semi_supervised_defaults:
            rule = make_rule(config.rule, **(rule.semi_supervised_defaults | config.rule_settings))
        with torch.device("meta"):  # a network of that shape, never allocated, checks arch against rule
            # on inputs of a roomy shape; build_parts checks the arch against the data's own shape
            rule.check_network(rule.build_network(config.arch, _roomy_inputs(config.arch), 2,
                                                  config.activation, config.dropout, config.layer_hidden))
        for prefix in ("forward", "feedback"):
            optim.check_optimizer(getattr(config, f"{prefix}_optimizer"))
            optim.check_scheduler(getattr(config, f"{prefix}_scheduler"))
        resolve_device(config.device)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    _check_rule_fits(config, rule)
    if config.labelled_per_batch is None:  # an eighth of every batch labelled, where some are not
        mixed = config.batch_size // 8 if uses_unlabelled(config, rule) else 0
        config = dataclasses.replace(config, labelled_per_batch=mixed)
    _check_ranges(config)
    return dataclasses.replace(config, rule_settings=current(rule))


def _roomy_inputs(arch: str) -> tuple[int, ...]:
    """Inputs of a shape any architecture of its kind accepts: sequences for a
    recurrent net, roomy RGB images otherwise."""
    return (8, 4) if is_recurrent_spec(arch) else (3, 256, 256)


def _check_ranges(config: Config) -> None:
    for key in ("epochs", "feedback_iterations", "feedback_pretrain_epochs", "threads", "layer_hidden"):
        if getattr(config, key) < 0:
            raise ConfigError(f"setting {key!r} must be >= 0")
    for key in ("batch_size", "probe_size"):
        if getattr(config, key) < 1:
            raise ConfigError(f"setting {key!r} must be >= 1")
    if config.precision != "float32" and config.dtype != "float32":
        raise ConfigError(f"precision={config.precision} autocasts float32 work: it needs dtype=float32")
    if config.init == "he" and is_recurrent_spec(config.arch):
        raise ConfigError("init=he is for chains of layers; a recurrent net starts from an orthogonal W "
                          "(use init=auto)")
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
    standardize = rule.standardize_inputs if config.standardize is None else config.standardize
    val_size = int(config.val_size) if config.val_size >= 1 else config.val_size
    try:
        splits = load_dataset(config.data, val_size=val_size, seed=config.seed, dtype=DTYPES[config.dtype],
                              limit=config.limit, standardize=standardize, root=config.data_root,
                              seq_len=config.seq_len)
    except ValueError as error:  # the data's own shapes, dtypes or labels
        raise ConfigError(str(error)) from None
    if splits.num_classes == 0 and not rule.learns_real_targets(config.arch):
        raise ConfigError(f"{config.data} has real targets (regression); rule {config.rule!r} learns class "
                          "labels: use bp, tp, dtp, drl or ldrl (or bengio2014 on an rnn: net)")
    if config.augment != "none" and splits.image_shape is None:
        raise ConfigError(f"augment={config.augment} needs images; {config.data} holds flat features")
    return splits


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


def read_every_state(net: torch.nn.Module, rule: Rule, data: str) -> None:
    """For ``data`` with a target at every step of a sequence: the read-out
    reads every state (ValueError if ``net`` has no states or ``rule`` cannot train it so)."""
    if not isinstance(net, RecurrentNetwork):
        raise ValueError(f"{data} has a target at every step of a sequence: it needs a recurrent "
                         "net (--arch rnn:WIDTH or gru:WIDTH)")
    net.every_state = True
    rule.check_network(net)


@dataclass
class RunParts:
    net: torch.nn.Module
    learner: Learner
    schedulers: dict


def build_parts(config: Config, rule: Rule, splits: DataSplits, device: torch.device) -> RunParts:
    """The network on ``device``, its forward and feedback optimizers (the
    latter only for a rule with feedback maps), the learner and the schedulers."""
    try:
        net = rule.build_network(config.arch, splits.example_shape, splits.num_outputs, config.activation,
                                 config.dropout, config.layer_hidden)
    except ValueError as error:  # the architecture does not fit these data (images too small, flat)
        raise ConfigError(str(error)) from None
    if splits.targets_per_step:
        try:
            read_every_state(net, rule, config.data)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if config.init == "he" or (config.init == "auto" and config.activation in UNBOUNDED
                               and not is_recurrent_spec(config.arch)):  # a recurrent net keeps its orthogonal W
        he_init(net)
    net = net.to(device, DTYPES[config.dtype])
    forward_opt = optim.make_optimizer(config.forward_optimizer, net.forward_parameters(),
                                       config.forward_lr, **config.forward_optimizer_args)
    feedback_opt = None
    if rule.uses_feedback and net.feedback_parameters():
        feedback_opt = optim.make_optimizer(config.feedback_optimizer, net.feedback_parameters(),
                                            config.feedback_lr, **config.feedback_optimizer_args)
    interleaved = config.feedback_schedule == "interleaved"
    learner = Learner(net, rule, forward_opt, feedback_opt,
                      config.feedback_iterations if interleaved and feedback_opt else 0,
                      precision=PRECISIONS[config.precision], compile=config.compile)
    schedulers = {
        "forward": optim.make_scheduler(config.forward_scheduler, forward_opt, config.epochs,
                                        **config.forward_scheduler_args),
        "feedback": (optim.make_scheduler(config.feedback_scheduler, feedback_opt, config.epochs,
                                          **config.feedback_scheduler_args) if feedback_opt else None),
    }
    return RunParts(net, learner, schedulers)
