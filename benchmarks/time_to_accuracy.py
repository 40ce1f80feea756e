"""Wall-clock time for each rule to first reach given Fashion-MNIST validation
accuracies, against back-prop.

Every rule trains with the settings the README's accuracy table chose for it
(``results/fashion_mnist_accuracy.json``, the entry of ``search_space.yaml``
it names, on that file's common settings: MLP 5x256 tanh, batch 128, cosine
schedule), one run at a time so that each has the machine's threads to
itself. A rule's time to an accuracy is the training time (``seconds`` in
its metrics.csv; evaluation and diagnostics are not counted) at the end of
the first epoch whose validation accuracy reaches it.

    python benchmarks/time_to_accuracy.py --rules bp,dtp,drl,ldrl --seeds 0,1 --threads 2
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import yaml

from accuracy import HERE, run_name, train, write_results


def chosen_settings(space: dict, table: dict, rule: str) -> dict:
    """The entry of the search space that the accuracy table chose for ``rule``
    (the table stores the settings as chosen; the space may since name a
    default that changed, e.g. ``feedback_map``, which the entry keeps)."""
    chosen = table[rule]["settings"]
    for entry in space["rules"][rule]:
        if all(entry.get(key) == value for key, value in chosen.items()):
            return entry
    raise SystemExit(f"{rule}: no entry of the search space holds its chosen settings {chosen}")


def seconds_to(metrics: Path, accuracy: float) -> float | None:
    """Training seconds at the end of the first epoch with val_acc ≥ ``accuracy``."""
    with metrics.open() as handle:
        for row in csv.DictReader(handle):
            if float(row["val_acc"]) >= accuracy:
                return float(row["seconds"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", default="bp,dtp,drl,ldrl")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--accuracies", default="0.85,0.88")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every run")
    parser.add_argument("--space", default=str(HERE / "search_space.yaml"))
    parser.add_argument("--table", default=str(HERE / "results" / "fashion_mnist_accuracy.json"))
    parser.add_argument("--runs", default=str(HERE / "runs" / "time_to_accuracy"))
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--name", default="fashion_mnist_time_to_accuracy")
    args = parser.parse_args()

    space = yaml.safe_load(Path(args.space).read_text())
    table = json.loads(Path(args.table).read_text())
    rules, seeds = args.rules.split(","), [int(s) for s in args.seeds.split(",")]
    accuracies = [float(a) for a in args.accuracies.split(",")]
    runs = Path(args.runs)
    found: dict[str, dict] = {}
    for seed in seeds:  # seeds outermost: an interrupted sweep has every rule's first seeds
        for rule in rules:
            overrides = chosen_settings(space, table, rule) | {"seed": seed}
            summary = train(rule, overrides, space["common"], args.epochs, runs, args.threads, "fashion-mnist")
            metrics = runs / run_name(rule, overrides) / "metrics.csv"
            entry = found.setdefault(rule, {"settings": chosen_settings(space, table, rule), "runs": []})
            entry["runs"].append({"seed": seed, "seconds": summary["seconds"],
                                  "val_accuracy": summary["val_accuracy"],
                                  **{f"to_{a}": seconds_to(metrics, a) for a in accuracies}})

    def cell(rule: str, accuracy: float) -> str:
        times = [r[f"to_{accuracy}"] for r in found[rule]["runs"]]
        if None in times:
            return f"not reached in {times.count(None)} of {len(times)} runs"
        text = " / ".join(f"{t:.0f} s" for t in times)
        bp = [r[f"to_{accuracy}"] for r in found["bp"]["runs"]] if "bp" in found else [None]
        return text + (f" ({statistics.median(times) / statistics.median(bp):.2f}×)" if None not in bp else "")

    lines = ["| rule | settings | " + " | ".join(f"to {100 * a:.0f} % (× bp, medians)" for a in accuracies)
             + " | final validation accuracy |",
             "|---|---|" + "---|" * len(accuracies) + "---|"]
    for rule in rules:
        settings = ", ".join(f"{k}={v}" for k, v in found[rule]["settings"].items())
        finals = " / ".join(f"{100 * r['val_accuracy']:.2f} %" for r in found[rule]["runs"])
        lines.append(f"| `{rule}` | {settings} | " + " | ".join(cell(rule, a) for a in accuracies)
                     + f" | {finals} |")
    write_results(Path(args.results), args.name, {"epochs": args.epochs, "threads": args.threads,
                                                  "rules": found}, lines)


if __name__ == "__main__":
    main()
