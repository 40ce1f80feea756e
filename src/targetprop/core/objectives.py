"""The read-out's loss ℓ and its scores, chosen by the targets' dtype:
class labels (integer y, −1 for an unlabelled example) take the
cross-entropy of the logits; real targets (floating y, one output unit, the
adding problem) take the squared error (ŷ − y)². Targets at every step of a
sequence (y (N, T), logits (N, T, outputs)) count every step as a row.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Scores = dict[str, tuple[Tensor, Tensor]]  # name -> (sum, count), summed over batches

__all__ = ["SOLVED_SQUARED_ERROR", "Scores", "labelled_rows", "output_loss", "output_scores", "classification_scores",
           "regression_scores"]

# A regression example counts as solved below this squared error (the adding
# problem's criterion, Hochreiter and Schmidhuber 1997).
SOLVED_SQUARED_ERROR = 0.04


def _rows(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Steps as rows: logits (N, T, outputs) and y (N, T) as (N·T, outputs) and (N·T,)."""
    if y.dim() == 2 and logits.dim() == 3:
        return logits.flatten(0, 1), y.flatten()
    return logits, y


def labelled_rows(y: Tensor) -> Tensor:
    """The number of rows with a target: y ≥ 0 for class labels (every step
    of a sequence a row), all for real targets."""
    return torch.tensor(y.numel(), device=y.device) if y.is_floating_point() else (y >= 0).sum()


def output_loss(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """ℓ(logits, y): cross-entropy over the labelled rows for integer y,
    (ŷ − y)² for floating y (``logits`` of shape (N, 1))."""
    logits, y = _rows(logits, y)
    if y.is_floating_point():
        return F.mse_loss(logits.squeeze(-1), y, reduction=reduction)
    return F.cross_entropy(logits, y, reduction=reduction, ignore_index=-1)


def classification_scores(logits: Tensor, y: Tensor, loss: Tensor | None = None) -> Scores:
    """``loss`` (cross-entropy) and ``acc`` summed over the labelled rows
    (y ≥ 0); ``loss`` is the batch's mean over them when already computed."""
    logits, y = _rows(logits, y)
    labelled = y >= 0
    count = labelled.sum()
    if loss is None:
        loss = F.cross_entropy(logits[labelled], y[labelled], reduction="sum").double()
    else:
        loss = loss.detach().double() * count
    return {"loss": (loss, count), "acc": (((logits.argmax(1) == y) & labelled).sum(), count)}


def regression_scores(prediction: Tensor, y: Tensor) -> Scores:
    """``loss`` (the squared error) and ``solved`` (the fraction of examples
    within ``SOLVED_SQUARED_ERROR``), summed over the batch."""
    prediction, y = _rows(prediction, y)
    error = (prediction.squeeze(-1).detach().double() - y.double()) ** 2
    count = torch.tensor(len(y), device=y.device)
    return {"loss": (error.sum(), count), "solved": ((error <= SOLVED_SQUARED_ERROR).sum(), count)}


def output_scores(logits: Tensor, y: Tensor, loss: Tensor | None = None) -> Scores:
    """The scores of a batch's read-out, by the targets' kind."""
    return regression_scores(logits, y) if y.is_floating_point() else classification_scores(logits, y, loss)
