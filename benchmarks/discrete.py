"""Discrete and stochastic networks (Lee et al. 2015, §3.3; Bengio 2014
§2.2.6): target propagation against back-propagation with the
straight-through estimator, on Fashion-MNIST.

* the sign net, 784-500-500-10: tanh units that send sign(h) to the layer
  above and to the read-out (``activation=sign``);
* the stochastic net, 784-200-200-10: sigmoid units that send a Bernoulli
  sample (``activation=bernoulli``); its test accuracy is reported for one
  stochastic pass per test image and for the class probabilities averaged
  over ``--samples`` passes (the network as an ensemble of its samples).

Each rule trains with its defaults for the same epochs (batch 128, Adam);
reported: final test accuracy (validation accuracy beside it).

    python benchmarks/discrete.py --epochs 10 --jobs 2
    python benchmarks/discrete.py --epochs 10 --set feedback_map=activation --name discrete_feedback-activation

Runs go to benchmarks/runs/discrete/ and are reused when complete; results
are written to benchmarks/results/<data>_discrete.{json,md}.
"""
from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from accuracy import HERE, add_ablation_arguments, parse_sets, run_name, settings_for, train, write_results
from targetprop.running.runs import load_run

NETS = {"sign 784-500-500-10": {"arch": "mlp:500x2", "activation": "sign"},
        "stochastic 784-200-200-10": {"arch": "mlp:200x2", "activation": "bernoulli"}}
RULES = ("bp", "dtp", "drl", "ldrl")


@torch.no_grad()
def averaged_accuracy(run_dir: Path, samples: int) -> float:
    """Test accuracy of the softmax averaged over ``samples`` stochastic passes."""
    torch.manual_seed(0)
    run = load_run(run_dir)
    x, y = run.splits.test.tensors
    probabilities = sum(torch.softmax(run.net(x), dim=1) for _ in range(samples)) / samples
    return (probabilities.argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--samples", type=int, default=100, help="stochastic passes averaged per test image")
    parser.add_argument("--runs", default=str(HERE / "runs" / "discrete"))
    parser.add_argument("--results", default=str(HERE / "results"))
    add_ablation_arguments(parser, "discrete", ", after the data's name")
    args = parser.parse_args()
    extra = parse_sets(args.set)

    runs = Path(args.runs)
    jobs = [(net, rule, NETS[net] | settings_for(rule, extra)) for net in NETS for rule in args.rules.split(",")]
    with ThreadPoolExecutor(args.jobs) as pool:
        summaries = list(pool.map(lambda job: train(job[1], job[2], {}, args.epochs, runs, args.threads, args.data),
                                  jobs))
    table = {}
    lines = [f"| network ({args.epochs} epochs) | rule | test accuracy | averaged over {args.samples} samples "
             "| validation accuracy |", "|---|---|---|---|---|"]
    for (net, rule, settings), s in zip(jobs, summaries):
        averaged = (averaged_accuracy(runs / run_name(rule, settings), args.samples)
                    if settings["activation"] == "bernoulli" else None)
        table[f"{net} / {rule}"] = {"test_accuracy": s["test_accuracy"], "val_accuracy": s["val_accuracy"],
                                    "seconds": s["seconds"], "averaged_test_accuracy": averaged, **NETS[net]}
        lines.append(f"| {net} | `{rule}`{' (straight-through)' * (rule == 'bp')} | "
                     f"{100 * s['test_accuracy']:.2f} % | "
                     f"{'—' if averaged is None else f'{100 * averaged:.2f} %'} | "
                     f"{100 * s['val_accuracy']:.2f} % |")
    write_results(Path(args.results), f"{args.data.replace('-', '_')}_{args.name}", table, lines)


if __name__ == "__main__":
    main()
