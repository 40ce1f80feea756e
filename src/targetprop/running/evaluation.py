"""A trained run on data: its scores (``targetprop evaluate``) and its
predictions (``targetprop predict``).

The examples are scaled as the run's training data were (8-bit pixels to
[0, 1], then the training split's standardisation, which the checkpoint
records), so any file or dataset of the same shape can be read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .config import ConfigError
from .data import load_dataset
from .metrics import LONG_NAMES, evaluate
from .runs import Run
from .setup import DTYPES
from .userdata import read_examples

__all__ = ["run_examples", "evaluate_run", "predict_run", "write_predictions"]

_BATCH = 512


def run_examples(run: Run, data: str | None, *, need_labels: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x, y) to evaluate ``run`` on: its own test split when ``data`` is
    None, else a dataset's test split (a name or folder as ``--data`` takes)
    or every example of a ``.npz`` file, scaled as the run's data were."""
    if data is None:
        return run.splits.test.tensors
    try:
        if data.endswith(".npz"):
            x, image_shape, y = read_examples(data)
        else:
            split = load_dataset(data, val_size=0, standardize=False, dtype=torch.float64,
                                 root=run.config.data_root, seq_len=run.config.seq_len,
                                 tree_depth=run.config.tree_depth, sequence_form=run.config.sequence_form).test
            (x, y), image_shape = (t.numpy() for t in split.tensors), None
    except ValueError as error:
        raise ConfigError(str(error)) from None
    info = run.info
    if x.shape[1] != info.num_features or (image_shape is not None and info.image_shape is not None
                                           and tuple(image_shape) != tuple(info.image_shape)):
        raise ConfigError(f"{data}: examples of shape {image_shape or (x.shape[1],)}; {run.config.data}, which the "
                          f"run trained on, has {info.image_shape or (info.num_features,)}")
    if need_labels and y is None:
        raise ConfigError(f"{data}: no labels 'y' to evaluate against (targetprop predict needs none)")
    if y is not None and info.num_classes and y.max(initial=0) >= info.num_classes:
        raise ConfigError(f"{data}: label {int(y.max())} is not one of the run's {info.num_classes} classes")
    x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    if info.mean is not None:
        x = (x - info.mean.double()) / info.std.double()
    x = x.to(DTYPES[run.config.dtype])
    return x, None if y is None else torch.as_tensor(y)


def _shaped(run: Run, x: torch.Tensor) -> torch.Tensor:
    """Flat examples in the shape the network reads (as the run's loaders give them)."""
    return x.reshape(len(x), *run.info.input_shape)


@torch.no_grad()
def evaluate_run(run: Run, data: str | None = None) -> dict:
    """The rule's evaluation scores of ``run`` (``acc``, ``loss``, ...) on ``data``."""
    x, y = run_examples(run, data, need_labels=True)
    loader = DataLoader(TensorDataset(_shaped(run, x), y), batch_size=_BATCH)
    device = next(run.net.parameters()).device
    scores = evaluate(run.rule, run.net, loader, device)
    return {"data": data or f"{run.config.data} (test split)", "examples": len(x), "epoch": run.epoch,
            **{LONG_NAMES.get(name, name): value for name, value in scores.items()}}


@torch.no_grad()
def predict_run(run: Run, data: str) -> dict[str, np.ndarray]:
    """``classes`` (the argmax) and ``probabilities`` (the softmax of the
    read-out) of ``run`` on every example of ``data``; ``outputs`` for a run
    with real targets."""
    if run.info.num_classes and not getattr(run.net, "labelled", True):
        raise ConfigError(f"{run.config.rule} trained a generative stack without labels: it predicts no classes")
    x, _ = run_examples(run, data, need_labels=False)
    outputs = _outputs(run, x)
    if not run.info.num_classes:
        return {"outputs": outputs.numpy()}
    probabilities = outputs.double().softmax(-1)
    return {"classes": probabilities.argmax(-1).numpy(), "probabilities": probabilities.float().numpy()}


def _outputs(run: Run, x: torch.Tensor) -> torch.Tensor:
    device = next(run.net.parameters()).device
    return torch.cat([run.net(part.to(device)).cpu() for part in _shaped(run, x).split(_BATCH)])


def write_predictions(predictions: dict[str, np.ndarray], path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"--out {path}: predictions are written as a .npz file")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **predictions)
    return path
