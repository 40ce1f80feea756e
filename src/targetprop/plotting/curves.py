"""PNG figures of one or several runs: learning curves and per-layer angles."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

__all__ = ["read_metrics", "plot_runs"]


def read_metrics(run: str | Path) -> list[dict[str, float]]:
    path = Path(run) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{run} is not a run directory (no metrics.csv)")
    with path.open() as handle:
        rows = [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
                for row in csv.DictReader(handle)]
    return [r for r in rows if r["epoch"] > 0]


def _label(run: Path) -> str:
    summary = run / "summary.json"
    if summary.is_file():
        info = json.loads(summary.read_text())
        return f"{info.get('rule')}: {run.name}"
    return run.name


def _finish(fig, axes, path: Path) -> None:
    """One legend for the whole figure, below the panels, then save."""
    handles, labels = axes[0].get_legend_handles_labels()
    rows = (len(labels) + 1) // 2
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 2), fontsize="small",
               frameon=False)
    fig.tight_layout(rect=(0, 0.06 * rows + 0.02, 1, 1))
    fig.savefig(path, dpi=120)


def _panel_order(name: str) -> tuple:
    """Layers by number, then a recurrent (tree) net's weight matrices, then its lags (depths) by size."""
    if name.isdigit():
        return (0, int(name), name)
    if name.startswith(("lag_", "depth_")):
        return (2, int(name.rpartition("_")[2]), name)
    return (1, 0, name)


def _panel_title(name: str) -> str:
    if name.isdigit():
        return f"layer {name}"
    if name.startswith("lag_"):
        lag = name.removeprefix("lag_")
        return f"target step {lag} step{'s' * (lag != '1')} back"
    if name.startswith("depth_"):
        depth = name.removeprefix("depth_")
        return f"target step {depth} level{'s' * (depth != '1')} below the root"
    return f"{name} weights"


def plot_runs(runs: list[str | Path], out_dir: str | Path) -> list[Path]:
    """Write ``curves.png`` (train loss, validation and test accuracy per epoch,
    or reconstruction error for generative stacks) and, where the runs
    report angles, ``angles.png`` (one panel per hidden layer, or, for a
    recurrent net, per weight matrix and per lag back in time; for a tree
    net, per depth below the root) for all runs
    together."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = [(Path(r), read_metrics(r)) for r in runs]

    accuracy = any("val_acc" in r for _, rows in data for r in rows)
    metric = "acc" if accuracy else "recon"
    name = "accuracy" if accuracy else "reconstruction error"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for run, rows in data:
        epochs = [r["epoch"] for r in rows]
        for ax, key in zip(axes, ("train_loss", f"val_{metric}", f"test_{metric}")):
            ax.plot(epochs, [r.get(key, math.nan) for r in rows], marker="o", ms=3, label=_label(run))
    for ax, title in zip(axes, ("training loss", f"validation {name}", f"test {name}")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    curves = out_dir / "curves.png"
    _finish(fig, axes, curves)
    plt.close(fig)

    layers = sorted({k.removeprefix("angle_") for _, rows in data for r in rows for k in r
                     if k.startswith("angle_")}, key=_panel_order)
    if not layers:
        return [curves]
    fig, axes = plt.subplots(1, max(len(layers), 1), figsize=(3.2 * max(len(layers), 1), 4.2),
                             squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers):
        for run, rows in data:
            ax.plot([r["epoch"] for r in rows], [r.get(f"angle_{layer}", math.nan) for r in rows],
                    marker="o", ms=3, label=_label(run))
        ax.set_title(_panel_title(layer))
        ax.set_xlabel("epoch")
        ax.axhline(90, color="grey", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("angle to back-prop update (°)")
    angles = out_dir / "angles.png"
    _finish(fig, axes[0], angles)
    plt.close(fig)
    return [curves, angles]
