"""Reopen a finished (or stopped) training run: its settings, its rule and
its trained network, for sampling, completion and evaluation. The network
is rebuilt from what the checkpoint records (the config, the examples'
shape); the data are loaded only when asked for (``Run.splits``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..core.rule import Rule
from ..registry import make_rule
from .checkpoint import CHECKPOINTS, CheckpointError, load_checkpoint
from .config import GIVEN, Config, ConfigError, load_config
from .data import DataInfo, DataSplits
from .setup import build_run_network, load_splits

__all__ = ["Run", "load_run"]


@dataclass
class Run:
    config: Config
    rule: Rule
    net: nn.Module
    info: DataInfo
    epoch: int = 0  # the last epoch the loaded checkpoint finished
    _splits: DataSplits | None = field(default=None, repr=False)

    @property
    def splits(self) -> DataSplits:
        """The run's data, with its own split and scaling (loaded on first use)."""
        if self._splits is None:
            self._splits = load_splits(self.config, self.rule)
        return self._splits


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", net: nn.Module | None = None,
             checkpoint: str = "last") -> Run:
    """The run in ``run_dir`` with its network in eval mode on ``device``,
    as its ``checkpoint`` holds it: ``last`` (where the run stopped) or
    ``best`` (after the epoch of its best validation score). A run that
    trained a network handed in as an object (``fit(model)``) needs that
    network again: ``net``, built as it was (its weights are loaded from the
    checkpoint)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"unknown checkpoint {checkpoint!r}; choose one of: {', '.join(CHECKPOINTS)}")
    config = load_config(run_dir / "config.yaml")
    if checkpoint == "best" and not (run_dir / CHECKPOINTS["best"]).is_file():
        raise CheckpointError(f"{run_dir} holds no {CHECKPOINTS['best']}: no epoch of it has finished with a "
                              "validation score (val_size 0, or stopped in its first epoch); use the last checkpoint")
    state = load_checkpoint(run_dir / CHECKPOINTS[checkpoint])
    if "network" not in state or "data" not in state:
        raise CheckpointError(f"checkpoint in {run_dir} records no network shape (made by an earlier "
                              "targetprop): retrain it to reopen it")
    if config.arch.startswith(GIVEN) and net is None:
        raise ConfigError(f"{run_dir} trained a network handed in as an object ({config.arch.removeprefix(GIVEN)}): "
                          "reopen it with load_run(run_dir, net=the same model)")
    rule = make_rule(config.rule, **config.rule_settings)
    info = DataInfo.from_state(state["data"])
    built = build_run_network(config, rule, info, state["network"]["every_state"], net)
    try:
        built.load_state_dict(state["learner"]["net"])
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint in {run_dir} does not fit its config: "
                              f"{str(error).splitlines()[0]}") from None
    return Run(config, rule, built.to(device).eval(), info, epoch=state["epoch"] - 1)
