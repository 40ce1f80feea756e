"""Discrete and stochastic networks (Lee et al. 2015, §3.3; Bengio 2014
§2.2.6): target propagation against back-propagation with the
straight-through estimator, on Fashion-MNIST.

* the sign net, 784-500-500-10: tanh units that send sign(h) to the layer
  above and to the read-out (``activation=sign``);
* the stochastic net, 784-200-200-10: sigmoid units that send a Bernoulli
  sample (``activation=bernoulli``); its accuracy is that of one stochastic
  pass per test image.

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

from accuracy import HERE, add_ablation_arguments, parse_sets, settings_for, train, write_results

NETS = {"sign 784-500-500-10": {"arch": "mlp:500x2", "activation": "sign"},
        "stochastic 784-200-200-10": {"arch": "mlp:200x2", "activation": "bernoulli"}}
RULES = ("bp", "dtp", "drl", "ldrl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs", default=str(HERE / "runs" / "discrete"))
    parser.add_argument("--results", default=str(HERE / "results"))
    add_ablation_arguments(parser, "discrete", ", after the data's name")
    args = parser.parse_args()
    extra = parse_sets(args.set)

    jobs = [(net, rule) for net in NETS for rule in args.rules.split(",")]
    with ThreadPoolExecutor(args.jobs) as pool:
        summaries = list(pool.map(lambda job: train(job[1], NETS[job[0]] | settings_for(job[1], extra), {}, args.epochs, Path(args.runs),
                                                    args.threads, args.data), jobs))
    table = {f"{net} / {rule}": {"test_accuracy": s["test_accuracy"], "val_accuracy": s["val_accuracy"],
                                 "seconds": s["seconds"], **NETS[net]}
             for (net, rule), s in zip(jobs, summaries)}
    lines = [f"| network ({args.epochs} epochs) | rule | test accuracy | validation accuracy |",
             "|---|---|---|---|"]
    lines += [f"| {net} | `{rule}`{' (straight-through)' * (rule == 'bp')} | "
              f"{100 * s['test_accuracy']:.2f} % | {100 * s['val_accuracy']:.2f} % |"
              for (net, rule), s in zip(jobs, summaries)]
    write_results(Path(args.results), f"{args.data.replace('-', '_')}_{args.name}", table, lines)


if __name__ == "__main__":
    main()
