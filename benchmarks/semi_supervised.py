"""Semi-supervised Fashion-MNIST: bengio2014 on N labels plus the unlabelled
rest, against bp on the N labelled examples alone (Bengio 2014 §3).

Every method in ``semi_supervised.yaml`` is trained for every label count and
seed; the keep-labels draw is fixed by the seed, so both methods see the same
labelled examples. Reported: final test accuracy, mean and standard deviation
over the seeds.

    python benchmarks/semi_supervised.py --jobs 2

Runs go to benchmarks/runs/semi/ and are reused when complete; results are
written to benchmarks/results/semi_supervised.{json,md}.
"""
from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from accuracy import HERE, train, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--space", default=str(HERE / "semi_supervised.yaml"))
    parser.add_argument("--runs", default=str(HERE / "runs" / "semi"))
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()

    space = yaml.safe_load(Path(args.space).read_text())
    jobs = [(name, labels, seed) for labels in space["labels"] for name in space["methods"]
            for seed in space["seeds"]]

    def run(job):
        name, labels, seed = job
        method = space["methods"][name]
        epochs = method["epochs"]
        epochs = epochs[labels] if isinstance(epochs, dict) else epochs
        overrides = method["settings"] | {"labels": labels, "seed": seed}
        return train(method["rule"], overrides, space["common"], epochs, Path(args.runs),
                     args.threads, args.data)

    with ThreadPoolExecutor(args.jobs) as pool:
        summaries = list(pool.map(run, jobs))

    table: dict[str, dict] = {}
    for (name, labels, seed), summary in zip(jobs, summaries):
        entry = table.setdefault(f"{labels}", {}).setdefault(name, {"test_accuracy": []})
        entry["test_accuracy"].append(summary["test_accuracy"])
    lines = ["| labels | " + " | ".join(f"`{m}`" for m in space["methods"]) + " |",
             "|---|" + "---|" * len(space["methods"])]
    for labels, methods in table.items():
        cells = []
        for name in space["methods"]:
            accuracies = methods[name]["test_accuracy"]
            methods[name]["mean"] = statistics.mean(accuracies)
            methods[name]["std"] = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
            cells.append(f"{100 * methods[name]['mean']:.2f} ± {100 * methods[name]['std']:.2f} %")
        lines.append(f"| {labels} | " + " | ".join(cells) + " |")
    write_results(Path(args.results), f"{args.data.replace('-', '_')}_semi_supervised", table, lines)


if __name__ == "__main__":
    main()
