"""Reopen a finished (or stopped) training run: its settings, its data and
its trained network, for sampling, completion and evaluation."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_checkpoint
from .config import Config, load_config
from .data import DataSplits
from .setup import build_parts, load_splits
from ..core.rule import Rule
from ..registry import make_rule

__all__ = ["Run", "load_run"]


@dataclass
class Run:
    config: Config
    rule: Rule
    net: torch.nn.Module
    splits: DataSplits


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """The run in ``run_dir`` with its network in eval mode on ``device``;
    the dataset is reloaded with the run's own split and scaling."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    config = load_config(run_dir / "config.yaml")
    state = load_checkpoint(run_dir / "checkpoint.pt")
    rule = make_rule(config.rule, **config.rule_settings)
    splits = load_splits(config, rule)
    net = build_parts(config, rule, splits, torch.device(device)).net
    try:
        net.load_state_dict(state["learner"]["net"])
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint in {run_dir} does not fit its config: "
                              f"{str(error).splitlines()[0]}") from None
    return Run(config, rule, net.eval(), splits)
