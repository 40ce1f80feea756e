"""Target propagation off the tuned path: every rule over a grid of depths,
widths, activations and datasets, with one set of default settings and a
fixed budget; reported as test accuracy and (rule − bp) per cell.

The full grid is rules bp, tp, dtp, drl, ldrl, bengio2014 ×
depth 2, 4, 8, 16 × width 64, 256, 1024 × activation tanh, relu, leaky-relu,
elu, sigmoid × fashion-mnist, mnist-5k; the flags select a slice of it.
A run that diverges is stopped by the trainer (summary.json records why) and
shows as "div" in the table.

    python benchmarks/robustness.py --epochs 3 --jobs 2
    python benchmarks/robustness.py --depths 2,8 --widths 256 --activations tanh,relu --epochs 1
    python benchmarks/robustness.py --set feedback_map=activation --name robustness_feedback-activation

Deep ReLU-like nets with a norm in every layer (``normalization``, act(N(W h + b))):

    python benchmarks/robustness.py --rules bp,dtp,drl,ldrl --depths 8,16 --widths 256 \
        --activations relu,leaky-relu,elu --data fashion-mnist --epochs 3 \
        --set normalization=layer --name robustness_layer-norm

Runs go to benchmarks/runs/robustness/ and are reused when finished; results
are merged into benchmarks/results/NAME.{json,md} and drawn as
benchmarks/results/NAME_<data>.png (rule − bp heat maps), NAME ``robustness``
unless ``--name`` says otherwise.
"""
from __future__ import annotations

import argparse
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from accuracy import HERE, add_ablation_arguments, parse_sets, settings_for, train, write_results

GRID = {"rules": "bp,tp,dtp,drl,ldrl,bengio2014", "depths": "2,4,8,16", "widths": "64,256,1024",
        "activations": "tanh,relu,leaky-relu,elu,sigmoid", "data": "fashion-mnist,mnist-5k"}


def run(cell: tuple, epochs: int, runs: Path, threads: int, extra: dict) -> dict:
    """Train one cell (or reuse its finished run); returns its summary, a
    diverged run's included. ``extra`` settings reach the rules that declare them."""
    rule, depth, width, activation, data = cell
    settings = {"arch": f"mlp:{width}x{depth}", "activation": activation} | settings_for(rule, extra)
    return train(rule, settings, {}, epochs, runs / data, threads, data, diverged_ok=True)


def heat_maps(table: dict, results: Path, stem: str) -> None:
    """One PNG per dataset: a panel per rule, (rule − bp) test accuracy over
    (depth × width) rows and activation columns."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = [tuple(key.split("|")) for key in table]
    for data in sorted({c[4] for c in cells}):
        rules = [r for r in dict.fromkeys(c[0] for c in cells if c[4] == data) if r != "bp"]
        rows = sorted({(int(c[1]), int(c[2])) for c in cells if c[4] == data})
        acts = list(dict.fromkeys(c[3] for c in cells if c[4] == data))
        fig, axes = plt.subplots(1, len(rules), figsize=(2.2 * len(rules) + 1, 0.45 * len(rows) + 1.5),
                                 squeeze=False)
        for ax, rule in zip(axes[0], rules):
            grid = np.full((len(rows), len(acts)), np.nan)
            for i, (depth, width) in enumerate(rows):
                for j, act in enumerate(acts):
                    entry = table.get(f"{rule}|{depth}|{width}|{act}|{data}", {})
                    if entry.get("minus_bp") is not None:
                        grid[i, j] = 100 * entry["minus_bp"]
            ax.imshow(grid, cmap="RdYlGn", vmin=-20, vmax=5, aspect="auto")
            ax.set_title(rule, fontsize=9)
            ax.set_xticks(range(len(acts)), acts, rotation=60, fontsize=7)
            ax.set_yticks(range(len(rows)), [f"{d}×{w}" for d, w in rows], fontsize=7)
            for i in range(len(rows)):
                for j in range(len(acts)):
                    text = "div" if np.isnan(grid[i, j]) else f"{grid[i, j]:.0f}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=6)
        fig.suptitle(f"{data}: test accuracy minus bp's (points)", fontsize=10)
        fig.tight_layout()
        fig.savefig(results / f"{stem}_{data}.png", dpi=120)
        plt.close(fig)


def _cell(table: dict, rule: str, cell: tuple) -> str:
    entry = table.get("|".join([rule, *cell]))
    if entry is None:
        return ""
    if entry["test_accuracy"] is None:
        return "div"
    if rule == "bp":
        return f"{100 * entry['test_accuracy']:.2f} %"
    return "—" if entry["minus_bp"] is None else f"{100 * entry['minus_bp']:+.1f}"


def pivot(table: dict) -> list[str]:
    """Markdown: one row per (depth × width, activation, data), bp's test
    accuracy, then each rule's difference from it in points ("div": diverged)."""
    rules = [r for r in dict.fromkeys(key.split("|")[0] for key in table) if r != "bp"]
    lines = ["| data | depth × width | activation | `bp` | " + " | ".join(f"`{r}` − bp" for r in rules) + " |",
             "|---|---|---|---|" + "---|" * len(rules)]
    for cell in dict.fromkeys(tuple(key.split("|")[1:]) for key in table):
        depth, width, act, data = cell
        lines.append(f"| {data} | {depth}×{width} | {act} | "
                     + " | ".join(_cell(table, rule, cell) for rule in ["bp", *rules]) + " |")
    return lines


CHANCE = 0.15  # test accuracy at or below this counts as "at chance" (10 classes)


def bars(table: dict) -> list[str]:
    """Markdown: per dataset and rule, the cells that reach our aims —
    within 2 points of bp at depth ≤ 8, within 5 at depth 16 (a cell where bp
    itself is at chance counts as met when the rule is not below it), and
    the cells at chance or diverged where bp trains."""
    lines = ["| data | rule | depth ≤ 8: within 2 points | depth 16: within 5 points | at chance or diverged "
             "where bp trains |", "|---|---|---|---|---|"]
    cells = [key.split("|") for key in table]
    for data in dict.fromkeys(c[4] for c in cells):
        for rule in dict.fromkeys(c[0] for c in cells if c[0] != "bp"):
            counts = {"shallow": [0, 0], "deep": [0, 0]}
            failed = 0
            for _, depth, width, act, d in (c for c in cells if c[0] == rule and c[4] == data):
                entry = table["|".join([rule, depth, width, act, d])]
                bp = table.get("|".join(["bp", depth, width, act, d]), {}).get("test_accuracy")
                if bp is None:
                    continue
                acc = entry["test_accuracy"]
                margin = 0.02 if int(depth) <= 8 else 0.05
                count = counts["shallow" if int(depth) <= 8 else "deep"]
                count[1] += 1
                count[0] += acc is not None and acc >= bp - margin
                failed += bp > CHANCE and (acc is None or acc <= CHANCE)
            fmt = lambda c: f"{c[0]} of {c[1]}" if c[1] else "—"
            lines.append(f"| {data} | `{rule}` | {fmt(counts['shallow'])} | {fmt(counts['deep'])} | {failed} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for key, default in GRID.items():
        parser.add_argument(f"--{key}", default=default, help=f"comma-separated (default {default})")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs", default=str(HERE / "runs" / "robustness"))
    parser.add_argument("--results", default=str(HERE / "results"))
    add_ablation_arguments(parser, "robustness", "")
    args = parser.parse_args()
    extra = parse_sets(args.set)

    axes = [getattr(args, key).split(",") for key in GRID]
    if "bp" not in axes[0]:
        axes[0].insert(0, "bp")  # every cell is reported against back-prop
    cells = list(itertools.product(*axes))
    with ThreadPoolExecutor(args.jobs) as pool:
        summaries = list(pool.map(lambda c: run(c, args.epochs, Path(args.runs), args.threads, extra), cells))
    results = Path(args.results)
    path = results / f"{args.name}.json"
    table = json.loads(path.read_text()) if path.is_file() else {}
    for cell, s in zip(cells, summaries):
        table["|".join(map(str, cell))] = {"test_accuracy": s.get("test_accuracy") if not s.get("diverged") else None,
                                           "diverged": s.get("diverged"), "epochs": args.epochs}
    for key, entry in table.items():
        rule, *rest = key.split("|")
        bp = table.get("|".join(["bp", *rest]), {}).get("test_accuracy")
        entry["minus_bp"] = (entry["test_accuracy"] - bp
                             if entry["test_accuracy"] is not None and bp is not None else None)
    write_results(results, args.name, table, [*bars(table), "", *pivot(table)])
    heat_maps(table, results, args.name)


if __name__ == "__main__":
    main()
