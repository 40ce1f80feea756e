"""What a run records: running sums of the rule's scores, evaluation over a
loader, the per-epoch line, ``metrics.csv`` and ``summary.json``.

The names come from the rule (``Rule.train_scores``, ``Rule.evaluate``,
``Rule.diagnostics``): a column is ``train_NAME``, ``val_NAME`` or
``test_NAME`` for every NAME the rule reports, so nothing here knows which
kind of rule ran.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import torch

from ..core.rule import Scores
from .checkpoint import write_text

__all__ = ["LONG_NAMES", "Totals", "evaluate", "epoch_line", "write_metrics", "validation_score", "summarize",
           "parse_stop_when", "early_stop"]

# Short names of the score columns in the per-epoch line and the summary.
LONG_NAMES = {"acc": "accuracy", "recon": "reconstruction", "solved": "solved", "loss": "loss"}


class Totals:
    """Sums and counts of named scores, kept on the device (no sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}

    def add(self, scores: Scores) -> None:
        for name, (total, count) in scores.items():
            if name in self.sums:
                self.sums[name] += total
                self.counts[name] += count
            else:
                self.sums[name], self.counts[name] = total.clone(), torch.as_tensor(count).clone()

    def means(self) -> dict[str, float]:
        """Sum over count for every name that counted something."""
        out = {}
        for name, total in self.sums.items():
            count = self.counts[name].item()
            if count:
                out[name] = total.item() / count
        return out

    def state_dict(self) -> dict:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()},
                "counts": {k: v.cpu() for k, v in self.counts.items()}}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in state["sums"].items()}
        self.counts = {k: v.to(device) for k, v in state["counts"].items()}


@torch.no_grad()
def evaluate(rule, net: torch.nn.Module, loader, device: torch.device) -> dict[str, float]:
    """The rule's evaluation scores averaged over a loader (none where it is empty or None)."""
    totals = Totals()
    for x, y in loader or ():
        totals.add(rule.evaluate(net, x.to(device), y.to(device)))
    return totals.means()


def epoch_line(row: dict, epochs: int) -> str:
    """One line for the terminal: losses and every train/val/test score."""
    if row["epoch"] <= 0:
        return f"pretrain feedback_loss {row['feedback_loss']:.4f}"
    parts = [f"epoch {row['epoch']}/{epochs}"]
    names = [k for k in row if k.startswith(("train_", "val_", "test_")) and not k.endswith("_loss")]
    parts += [f"loss {row['train_loss']:.4f}"] + [f"{k.replace('_', ' ')} {row[k]:.4f}" for k in names]
    return "  ".join(parts) + f"  {row['seconds']:.1f}s"


def write_metrics(rows: list[dict], out_dir: Path, summary: dict) -> None:
    """``metrics.csv`` (one row per epoch) and ``summary.json``, each
    replaced atomically; a full disk keeps the last good ones
    (:class:`~.checkpoint.CheckpointError`)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "metrics.csv", table.getvalue())
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def validation_score(row: dict) -> float | None:
    """The score ``best.pt`` keeps the best of (higher is better): the
    validation accuracy, else minus the validation loss or reconstruction
    error; None for a run without a validation split."""
    for key, sign in (("val_acc", 1.0), ("val_loss", -1.0), ("val_recon", -1.0)):
        if key in row and math.isfinite(row[key]):
            return sign * row[key]
    return None


_STOP_WHEN = re.compile(r"^\s*(\w+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")


def parse_stop_when(text: str) -> tuple[str, str, float]:
    """``METRIC>=VALUE`` (or ``<=``) as (metric, comparison, value); ValueError otherwise."""
    match = _STOP_WHEN.match(text)
    if match is None or not match.group(1).startswith("val_"):
        raise ValueError(f"setting 'stop_when': write VAL_METRIC>=VALUE or VAL_METRIC<=VALUE of a validation "
                         f"metric (val_acc>=1, val_solved>=1, val_loss<=0.01), got {text!r}")
    try:
        return match.group(1), match.group(2), float(match.group(3))
    except ValueError:
        raise ValueError(f"setting 'stop_when': {match.group(3)!r} is not a number") from None


def early_stop(rows: list[dict], stop_when: str | None, patience: int) -> str | None:
    """Why a run stops before its last epoch, read off its rows (so a resumed
    run decides alike): a validation metric reached ``stop_when``, or no
    better validation score for ``patience`` epochs; None to go on."""
    trained = [r for r in rows if r["epoch"] > 0]
    if not trained:
        return None
    if stop_when is not None:
        metric, comparison, value = parse_stop_when(stop_when)
        reached = trained[-1].get(metric)
        if reached is not None and (reached >= value if comparison == ">=" else reached <= value):
            return f"{metric} reached {reached:g} at epoch {trained[-1]['epoch']} ({stop_when})"
    scores = [validation_score(r) for r in trained]
    if patience and all(s is not None for s in scores) and len(scores) > patience:
        best = max(range(len(scores)), key=lambda i: scores[i])
        if len(scores) - 1 - best >= patience:
            return f"no better validation score for {patience} epochs (best at epoch {trained[best]['epoch']})"
    return None


def summarize(rows: list[dict]) -> dict:
    """The last trained epoch's scores (``test_accuracy``, ``val_reconstruction``,
    ...) and, where the rule reports an accuracy, the epoch of the best
    validation accuracy."""
    trained = [r for r in rows if r["epoch"] > 0]
    last = trained[-1] if trained else {}
    out = {"epochs": len(trained)}
    for split in ("test", "val", "train"):
        for short, long in LONG_NAMES.items():
            out[f"{split}_{long}"] = last.get(f"{split}_{short}")
    best = max(trained, key=lambda r: r["val_acc"] if not math.isnan(r.get("val_acc", math.nan)) else -1,
               default={})
    out["best_val_epoch"], out["test_accuracy_at_best_val"] = best.get("epoch"), best.get("test_acc")
    return out
