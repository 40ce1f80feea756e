"""Recursive nets (Bengio 2014 §5): target propagation through structure
against back-propagation through structure (BPTS) on generated list
operations (``--data listops``) of growing depth. Each rule trains a tree net
(``tree:128``) from several seeds for the same epochs; reported per depth and
rule: the test accuracy per seed, their mean, the gap to BPTS (``bp``), the
angles of the rule's updates to BPTS's by depth below the root on the last
epoch, and per rule the first depth at which it falls more than 2 points
behind BPTS.

    python benchmarks/trees.py --depths 3,5,8 --rules bp,dtp,drl,ldrl --seeds 0,1,2 --epochs 30 --jobs 2

Runs go to benchmarks/runs/trees/ and are reused when finished; results to
benchmarks/results/NAME.{json,md} (NAME ``trees``).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from accuracy import HERE, add_ablation_arguments, parse_sets, run_name, settings_for, train, write_results

from targetprop.running.data import load_dataset

BEHIND = 0.02  # a rule fails at a depth where its mean test accuracy is this far below BPTS's


def run(cell: tuple, arch: str, epochs: int, runs: Path, threads: int, extra: dict) -> dict:
    """Train one (depth, rule, seed), or reuse its finished run; returns its result."""
    depth, rule, seed = cell
    settings = {"arch": arch, "tree_depth": depth, "seed": seed} | settings_for(rule, extra)
    where = runs / f"depth{depth}"
    summary = train(rule, settings, {}, epochs, where, threads, "listops", diverged_ok=True)
    with (where / run_name(rule, settings) / "metrics.csv").open() as handle:
        last = list(csv.DictReader(handle))[-1]
    angles = {key.removeprefix("angle_"): float(value) for key, value in last.items()
              if key.startswith("angle_depth_") and value not in ("", "nan")}
    return {"depth": depth, "rule": rule, "seed": seed, "test_accuracy": summary.get("test_accuracy"),
            "diverged": bool(summary.get("diverged")), "angles": angles}


def majority(depth: int) -> float:
    """The test accuracy of always answering the commonest training label."""
    splits = load_dataset("listops", val_size=0, tree_depth=depth)
    train_labels, test_labels = splits.train.tensors[1].numpy(), splits.test.tensors[1].numpy()
    return float(np.mean(test_labels == np.bincount(train_labels).argmax()))


def table_lines(results: list[dict], depths: list[int], rules: list[str], extra: dict) -> list[str]:
    changed = f" Settings beyond the defaults: {', '.join(f'{k}={v}' for k, v in extra.items())}." if extra else ""
    lines = [f"Test accuracy on listops per tree depth; a rule fails at a depth where its mean is more than "
             f"{100 * BEHIND:.0f} points below BPTS's (`bp`); angles (degrees) of the rule's forward update "
             f"to BPTS's at the nodes k levels below the root, last epoch, mean over seeds.{changed}", "",
             "| depth | majority class | rule | test accuracy per seed | mean | vs BPTS | angle depth 1 | "
             "angle depth 2 | angle deepest |", "|---|---|---|---|---|---|---|---|---|"]
    means = {}
    for depth, rule in itertools.product(depths, rules):
        mine = [r for r in results if (r["depth"], r["rule"]) == (depth, rule)]
        scores = [r["test_accuracy"] for r in mine if not r["diverged"] and r["test_accuracy"] is not None]
        means[depth, rule] = statistics.fmean(scores) if len(scores) == len(mine) and mine else None

    def angle(mine: list[dict], lag: int | None) -> str:
        values = [r["angles"][f"depth_{lag or max(int(k.split('_')[1]) for k in r['angles'])}"]
                  for r in mine if r["angles"] and (lag is None or f"depth_{lag}" in r["angles"])]
        return f"{statistics.fmean(values):.1f}" if values else "—"

    commonest = {depth: majority(depth) for depth in depths}
    for depth, rule in itertools.product(depths, rules):
        mine = [r for r in results if (r["depth"], r["rule"]) == (depth, rule)]
        per_seed = " / ".join("div" if r["diverged"] else f"{100 * r['test_accuracy']:.2f}" for r in mine)
        mean, base = means[depth, rule], means.get((depth, "bp"))
        gap = "—" if mean is None or base is None or rule == "bp" else f"{100 * (mean - base):+.2f}"
        lines.append(f"| {depth} | {100 * commonest[depth]:.2f} | `{rule}` | {per_seed} | "
                     f"{'—' if mean is None else f'{100 * mean:.2f}'} | {gap} | {angle(mine, 1)} | "
                     f"{angle(mine, 2)} | {angle(mine, None)} |")
    lines += ["", "| rule | first depth more than 2 points behind BPTS |", "|---|---|"]
    for rule in (r for r in rules if r != "bp"):
        failed = [d for d in depths if means[d, rule] is None or means.get((d, "bp")) is None
                  or means[d, rule] < means[d, "bp"] - BEHIND]
        lines.append(f"| `{rule}` | {failed[0] if failed else f'none up to {max(depths)}'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", default="3,5,8")
    parser.add_argument("--rules", default="bp,dtp,drl,ldrl")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arch", default="tree:128")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default=str(HERE / "runs" / "trees"))
    parser.add_argument("--results", default=str(HERE / "results"))
    add_ablation_arguments(parser, "trees", "")
    args = parser.parse_args()
    depths, rules = [int(d) for d in args.depths.split(",")], args.rules.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = parse_sets(args.set)
    cells = list(itertools.product(depths, rules, seeds))
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda cell: run(cell, args.arch, args.epochs, Path(args.runs), args.threads,
                                                 extra), cells))
    write_results(Path(args.results), args.name, {"behind": BEHIND, "runs": results},
                  table_lines(results, depths, rules, extra))


if __name__ == "__main__":
    main()
