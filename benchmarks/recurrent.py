"""Question 13 of Bengio (2014): does target propagation capture longer-term
dependencies than back-propagation through time? For each problem and
sequence length T, each rule trains a recurrent net (``rnn:100``) from
several seeds for a fixed budget of updates; a run solves the problem when
its validation score (accuracy, or the fraction of adding sequences within
a squared error of 0.04) reaches ``SOLVED`` at the end of an epoch.

    python benchmarks/recurrent.py --problems adding,temporal-order --lengths 10,30,60,100,200 \\
        --rules bp,dtp,bengio2014 --seeds 0,1,2 --updates 3000 --jobs 2

Reported per problem, T and rule: the runs that solved it, the median
number of updates they needed, the final test score; and per problem and
rule the longest T that every seed solved. Runs go to
benchmarks/runs/recurrent/ and are reused when finished; results to
benchmarks/results/NAME.{json,md} (NAME ``recurrent``).

``--protocol manchev2020`` trains as Manchev and Spratling (2020) do, as far
as settings reach: batch 20, SGD with Nesterov momentum 0.9 (forward 0.01,
feedback 0.001, constant), the top target's step 0.1 on the batch's mean
loss (``target_step`` 0.005 on the per-example one), the inverse that reads
x_t through f's U (``feedback_map=activation``, no gating), losses averaged
over units, no feedback noise (``dtp``, ``tp``), orthogonal weights at the
start, the problems in the form of their generators (Pascanu et al. 2013,
``sequence_form=pascanu2013``), and a run stops once every validation
sequence is right (their "error below 0.0001 %") or after 30 000 updates
without a better validation score. Their training data are fresh sequences
every batch, of lengths drawn per batch, and the validation set 10 000 more;
ours are the fixed 9 000 and 1 000 of the task, of length T.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from accuracy import HERE, add_ablation_arguments, parse_sets, run_name, settings_for, train, write_results

from targetprop.running.sources import GENERATED_SIZES

VAL_FRACTION = 0.1


class Protocol(NamedTuple):
    """How every run trains: its batch, the validation score that counts as
    solved, the settings of every rule (``settings``, each kept where the
    rule declares it) and of some rules (``per_rule``)."""
    name: str
    batch: int
    solved: float
    settings: dict
    per_rule: dict

    @property
    def updates_per_epoch(self) -> int:
        return math.ceil(GENERATED_SIZES[0] * (1 - VAL_FRACTION) / self.batch)


_NESTEROV = {"momentum": 0.9, "nesterov": True}
PROTOCOLS = {
    "ours": Protocol("ours", 128, 0.95, {}, {}),
    "manchev2020": Protocol("manchev2020", 20, 1.0, {
        "forward_optimizer": "sgd", "forward_optimizer_args": _NESTEROV, "forward_lr": 0.01,
        "feedback_optimizer": "sgd", "feedback_optimizer_args": _NESTEROV, "feedback_lr": 0.001,
        "target_step": 0.1 / 20, "feedback_map": "activation", "loss_average": "units", "init": "orthogonal",
        "sequence_form": "pascanu2013",
        "stop_patience": math.ceil(30_000 / (GENERATED_SIZES[0] * (1 - VAL_FRACTION) / 20))},
        {"dtp": {"feedback_noise": 0.0}, "tp": {"feedback_noise": 0.0}}),
}


def score_key(problem: str) -> str:
    return "solved" if problem == "adding" else "acc"


def run(cell: tuple, arch: str, updates: int, runs: Path, threads: int, extra: dict, protocol: Protocol) -> dict:
    """Train one (problem, T, rule, seed) for ``updates`` updates (whole
    epochs) or reuse its finished run; returns its result."""
    problem, length, rule, seed = cell
    key = score_key(problem)
    stop = {"stop_when": f"val_{key}>={protocol.solved}"} if protocol.solved >= 1 else {}
    common = settings_for(rule, protocol.settings | stop | protocol.per_rule.get(rule, {}))  # not in run names
    settings = {"arch": arch, "seq_len": length, "seed": seed, "batch_size": protocol.batch,
                "val_size": VAL_FRACTION} | settings_for(rule, extra)
    epochs = math.ceil(updates / protocol.updates_per_epoch)
    where = runs / problem if protocol is PROTOCOLS["ours"] else runs / protocol.name / problem
    summary = train(rule, settings, common, epochs, where, threads, problem, diverged_ok=True)
    with (where / run_name(rule, settings) / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) > 0]
    solved_at = next((int(row["epoch"]) for row in rows if float(row[f"val_{key}"] or "nan") >= protocol.solved),
                     None)
    return {"problem": problem, "length": length, "rule": rule, "seed": seed,
            "updates_to_solve": None if solved_at is None else solved_at * protocol.updates_per_epoch,
            "test_score": summary.get(f"test_{'solved' if key == 'solved' else 'accuracy'}"),
            "diverged": bool(summary.get("diverged"))}


def table_lines(results: list[dict], problems: list[str], lengths: list[int], rules: list[str],
                extra: dict, protocol: str) -> list[str]:
    changed = f" Settings beyond the defaults: {', '.join(f'{k}={v}' for k, v in extra.items())}." if extra else ""
    chosen = PROTOCOLS[protocol]
    lines = [f"Protocol `{protocol}` (batch {chosen.batch}). A run solves a problem when its validation score "
             f"reaches {chosen.solved:.2f} ({chosen.updates_per_epoch} updates per epoch).{changed}", "",
             "| problem | T | rule | solved (runs) | median updates to solve | test score per seed |",
             "|---|---|---|---|---|---|"]
    longest = {}
    for problem, length, rule in itertools.product(problems, lengths, rules):
        mine = [r for r in results if (r["problem"], r["length"], r["rule"]) == (problem, length, rule)]
        solved = [r["updates_to_solve"] for r in mine if r["updates_to_solve"] is not None]
        if mine and len(solved) == len(mine):
            longest[(problem, rule)] = max(longest.get((problem, rule), 0), length)
        scores = " / ".join("div" if r["diverged"] else f"{r['test_score']:.3f}" for r in mine)
        median = f"{statistics.median(solved):.0f}" if solved else "—"
        lines.append(f"| {problem} | {length} | `{rule}` | {len(solved)}/{len(mine)} | {median} | {scores} |")
    lines += ["", "| problem | rule | longest T solved by every seed |", "|---|---|---|"]
    for problem, rule in itertools.product(problems, rules):
        lines.append(f"| {problem} | `{rule}` | {longest.get((problem, rule), 'none')} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="adding,temporal-order")
    parser.add_argument("--lengths", default="10,30,60,100,200")
    parser.add_argument("--rules", default="bp,dtp,bengio2014")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arch", default="rnn:100")
    parser.add_argument("--updates", type=int, default=3000, help="budget of updates per run (whole epochs)")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="ours",
                        help="how every run trains (module doc)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default=str(HERE / "runs" / "recurrent"))
    parser.add_argument("--results", default=str(HERE / "results"))
    add_ablation_arguments(parser, "recurrent", "")
    args = parser.parse_args()
    problems, rules = args.problems.split(","), args.rules.split(",")
    lengths, seeds = [int(t) for t in args.lengths.split(",")], [int(s) for s in args.seeds.split(",")]
    cells = list(itertools.product(problems, lengths, rules, seeds))
    extra = parse_sets(args.set)
    protocol = PROTOCOLS[args.protocol]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda cell: run(cell, args.arch, args.updates, Path(args.runs), args.threads,
                                                 extra, protocol), cells))
    write_results(Path(args.results), args.name,
                  {"protocol": args.protocol, "solved_at": protocol.solved, "runs": results},
                  table_lines(results, problems, lengths, rules, extra, args.protocol))


if __name__ == "__main__":
    main()
