"""``fit``: train a model of one's own by a rule in one call, into a run
directory like the command line's."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .config import Config, ConfigError
from .data import loader_data
from .trainer import Trainer

__all__ = ["fit"]


def fit(model: nn.Module | str, data: str | tuple[DataLoader, ...] | list[DataLoader], rule: str = "dtp", *,
        epochs: int = 3, out: str | Path, resume: bool = False, **settings: Any) -> dict:
    """Train ``model`` with ``rule`` and return the run's summary (the
    contents of ``summary.json``: ``test_accuracy``, ``val_accuracy``, ...).

    ``model``: an ``nn.Sequential`` (wrapped into blocks, each with a
    proposed feedback map, :func:`targetprop.wrap`), or a network of target
    propagation already; training it trains the model's own modules. Or an
    architecture spec as ``--arch`` takes (``"mlp:256x5"``, ``"resnet20"``,
    ``"rnn:128"``, a generative rule's stack ``"mlp:512-256"``): the
    network is built for the rule and the data, and the run reopens from its
    directory alone (``targetprop evaluate``, ``load_run``).
    ``data``: a dataset name or file as ``--data`` takes (``fashion-mnist``,
    ``path/to/file.npz``, ``imagefolder:DIR``, ...), or the user's own
    ``DataLoader``s (train, validation) or (train, validation, test) of
    (x, y) batches, x in each example's natural shape; without a test
    loader the summary's test columns are empty. ``out``: the run
    directory (``config.yaml``, ``metrics.csv``, ``summary.json``,
    ``checkpoint.pt``); ``resume`` continues the run there. ``settings``:
    any run-level or rule setting (``forward_lr=3e-4``, ``target_step=0.5``;
    ``targetprop rules NAME`` lists them)."""
    values = {"rule": rule, "epochs": epochs, "progress": settings.pop("progress", False), **settings}
    if isinstance(model, str):
        values["arch"], model = model, None
    if isinstance(data, str):
        values["data"] = data
        config = Config().update(values)
        return Trainer(config, out, resume=resume, net=model).run()
    if model is None:
        raise ConfigError("an architecture spec is built for a dataset targetprop loads; with DataLoaders of your "
                          "own, pass the model itself")
    loaders = tuple(data)
    if len(loaders) not in (2, 3) or not all(isinstance(loader, DataLoader) for loader in loaders):
        raise ConfigError("data is a dataset name or file, or (train, validation[, test]) DataLoaders")
    for key in ("data", "batch_size", "labels", "limit", "val_size"):
        if key in values:
            raise ConfigError(f"setting {key!r} belongs to datasets targetprop loads; with DataLoaders of your "
                              "own, the loaders decide it")
    config = Config().update(values)
    run_data = loader_data(*loaders[:2], loaders[2] if len(loaders) == 3 else None,
                           _outputs(model, loaders[0]), config.probe_size)
    return Trainer(config, out, resume=resume, net=model, data=run_data).run()


@torch.no_grad()
def _outputs(model: nn.Module, loader: DataLoader) -> int:
    """The width of the model's prediction on one example of the loader."""
    x, _ = next(iter(loader))
    was_training = model.training
    model.eval()
    try:
        return int(model(x[:1]).shape[-1])
    except RuntimeError as error:
        raise ConfigError(f"the model does not take the loader's examples of shape {tuple(x.shape[1:])}: "
                          f"{str(error).splitlines()[0]}") from None
    finally:
        model.train(was_training)
