"""One process against N data-parallel processes (torch.distributed, gloo on
CPU) with the same global batch: final test accuracy over seeds, and the
wall-clock seconds of one epoch.

    python benchmarks/distributed.py --rule dtp --epochs 3 --seeds 0,1,2 --nproc 2

Runs go to benchmarks/runs/distributed/ and are reused when finished;
results to benchmarks/results/distributed.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(rule: str, data: str, epochs: int, seed: int, nproc: int, runs: Path) -> dict:
    out = runs / f"{rule}_{data}_seed{seed}_nproc{nproc}"
    summary = out / "summary.json"
    if not (summary.is_file() and json.loads(summary.read_text()).get("completed")):
        subprocess.run([sys.executable, "-m", "targetprop.cli", "train", "--data", data, "--rule", rule,
                        "--epochs", str(epochs), "--seed", str(seed), "--nproc", str(nproc), "--no-progress",
                        "--out", str(out), *(["--resume"] if (out / "checkpoint.pt").is_file() else [])],
                       check=True)
    return json.loads(summary.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rule", default="dtp")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--runs", default=str(HERE / "runs" / "distributed"))
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    table = {}
    for nproc in (1, args.nproc):
        summaries = [run(args.rule, args.data, args.epochs, seed, nproc, Path(args.runs)) for seed in seeds]
        table[nproc] = {"test_accuracy": [s["test_accuracy"] for s in summaries],
                        "epoch_seconds": [s["seconds"] / s["epochs"] for s in summaries]}
    lines = [f"`{args.rule}` on {args.data}, {args.epochs} epochs, global batch 128, seeds {args.seeds}:", "",
             "| processes | test accuracy per seed | mean | seconds per epoch (median) |", "|---|---|---|---|"]
    for nproc, entry in table.items():
        accs = entry["test_accuracy"]
        lines.append(f"| {nproc} | {' / '.join(f'{100 * a:.2f} %' for a in accs)} | "
                     f"{100 * statistics.mean(accs):.2f} % | {statistics.median(entry['epoch_seconds']):.1f} |")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "distributed.json").write_text(json.dumps(table, indent=2) + "\n")
    (results / "distributed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
