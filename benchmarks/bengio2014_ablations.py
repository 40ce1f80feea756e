"""What each departure of the `bengio2014` defaults from the paper's text is
worth: the rule with its defaults, and with one setting put back as the paper
has it, trained for the same few epochs; validation accuracy (Fashion-MNIST,
MLP 5x256, strict credit assignment).

    python benchmarks/bengio2014_ablations.py --epochs 5 --jobs 2

Runs go to benchmarks/runs/ablations/ and are reused when complete; results
are written to benchmarks/results/<data>_bengio2014_ablations.{json,md}.
"""
from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from accuracy import HERE, train, write_results

VARIANTS = {
    "defaults": ({}, "difference propagation, no recirculation pull, top input noise 0.3"),
    "propagation=tp": ({"propagation": "tp"}, "the paper's ĥ_{l-1} = g_l(ĥ_l)"),
    "recirculation_weight=1": ({"recirculation_weight": 1.0},
                               "Algorithm 2's h_l target for f_l(h̃_{l-1})"),
    "top_input_noise=0": ({"top_input_noise": 0.0}, "only the top code corrupted"),
    "layer_backprop=true": ({"layer_backprop": True}, "each layer's reconstruction error also trains its encoder "
                            "(the default of a run with unlabelled examples)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs", default=str(HERE / "runs" / "ablations"))
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()

    common = {"arch": "mlp:256x5"}
    with ThreadPoolExecutor(args.jobs) as pool:
        summaries = list(pool.map(
            lambda item: train("bengio2014", item[0], common, args.epochs, Path(args.runs),
                               args.threads, args.data), VARIANTS.values()))

    table = {name: {"val_accuracy": s["val_accuracy"], "settings": settings, "what": what}
             for (name, (settings, what)), s in zip(VARIANTS.items(), summaries)}
    lines = [f"| variant ({args.epochs} epochs) | what it is | validation accuracy |", "|---|---|---|"]
    lines += [f"| `{name}` | {entry['what']} | {100 * entry['val_accuracy']:.2f} % |"
              for name, entry in table.items()]
    write_results(Path(args.results), f"{args.data.replace('-', '_')}_bengio2014_ablations", table, lines)


if __name__ == "__main__":
    main()
