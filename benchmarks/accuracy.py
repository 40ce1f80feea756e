"""Fashion-MNIST test accuracy of each rule, best of a documented search.

A space file with ``shared`` ranges (:mod:`targetprop.running.space`) runs
``targetprop sweep`` for every rule: the same number of trials and epochs on
the same shared ranges (plus each rule's own), the median pruner, the best
trial retrained on the whole training set with ``--seeds`` seeds; the table
gives the mean test accuracy and its spread over the seeds:

    python benchmarks/accuracy.py --space benchmarks/sweep_space.yaml --rules bp,dtp,drl,ldrl \
        --trials 12 --epochs 20 --seeds 3 --jobs 2

A space file with ``common`` settings and a list of settings per rule is a
grid, the form the older tables were made with: for every rule, every setting in ``search_space.yaml`` is trained for the same
number of epochs on the same network (MLP 5x256 tanh, batch 128), holding out
a validation split. The setting with the highest final *validation* accuracy
is chosen; it is then trained once more on the whole training set, and the
final *test* accuracy of that run is reported. The test split never takes
part in the choice.

    python benchmarks/accuracy.py --rules bp,dtp,drl,ldrl --epochs 30 --jobs 2

With ``--no-retrain`` the chosen search run's own test accuracy is reported
(trained on the training set less the validation split), at half the cost.

The conv-net table is the same search over ``search_space_conv.yaml``,
meant for a GPU:

    python benchmarks/accuracy.py --space benchmarks/search_space_conv.yaml --name fashion_mnist_conv_accuracy \
        --runs benchmarks/runs/conv --epochs 30 --jobs 8 --device cuda

An entry of the search space is a rule name, or ``rule/variant`` for a rule
searched in several variants (``bengio2014/strict``); a setting ``epochs``
overrides ``--epochs`` for its run. Runs go to
benchmarks/runs/ (ignored by git) and are skipped when already complete, so an
interrupted sweep continues where it stopped. Results are merged into
benchmarks/results/<name>.{json,md} (default name: <data>_accuracy): entries not run keep their
earlier results.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from targetprop.registry import RULES, rule_settings
from targetprop.running.config import run_settings

HERE = Path(__file__).resolve().parent


def run_name(rule: str, overrides: dict) -> str:
    parts = [rule] + [f"{k}={v}" for k, v in sorted(overrides.items())]
    return "_".join(parts).replace(" ", "").replace("/", "-").replace(":", "") or rule


def add_ablation_arguments(parser: argparse.ArgumentParser, name: str, where: str) -> None:
    """``--set KEY=VALUE`` (repeatable; read with :func:`parse_sets`) and
    ``--name``, the results file stem, ``name`` unless given; ``where`` says
    how the stem is used."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a rule setting for every rule that declares it (an ablation)")
    parser.add_argument("--name", default=name, help=f"results file stem{where}")


def parse_sets(items: list[str]) -> dict:
    """``--set KEY=VALUE`` arguments as settings (values parsed as YAML)."""
    return {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in items)}


def settings_for(rule: str, extra: dict) -> dict:
    """The ``extra`` settings that ``rule`` declares, and the run-level ones
    (an ablation of a rule's setting reaches only the rules it concerns; bp
    never takes a feedback setting; ``normalization=layer`` changes every net)."""
    name = rule.split("/")[0]
    declared, feedback = rule_settings(name), RULES[name].cls.uses_feedback
    return {key: value for key, value in extra.items()
            if key in declared or (key in run_settings() and (feedback or not key.startswith("feedback_")))}


def write_results(results: Path, stem: str, table: dict, lines: list[str]) -> None:
    """``stem``.json (the table) and ``stem``.md (the Markdown ``lines``) under
    ``results``; the lines are printed too."""
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(table, indent=2) + "\n")
    (results / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def train(entry: str, overrides: dict, common: dict, epochs: int, runs: Path, threads: int,
          data: str, final: bool = False, diverged_ok: bool = False, device: str = "auto") -> dict:
    """Train one setting of a search-space entry (or reuse its finished run);
    returns its summary. An ``epochs`` key among the settings overrides
    ``epochs``. With ``diverged_ok`` a run stopped by the divergence guard
    (exit 3) is a result too: its summary says why."""
    rule = entry.split("/")[0]
    out = runs / ("final_" * final + run_name(entry, overrides))
    overrides = dict(overrides)
    epochs = overrides.pop("epochs", epochs)
    overrides = common | overrides | ({"val_size": 0} if final else {})
    summary = out / "summary.json"
    if summary.is_file():
        stored = json.loads(summary.read_text())
        if stored.get("completed") or (diverged_ok and stored.get("diverged")):
            return stored

    command = [sys.executable, "-m", "targetprop.cli", "train", "--data", data, "--rule", rule,
               "--epochs", str(epochs), "--out", str(out), "--no-progress",
               "--set", f"threads={threads}", "--device", device]
    if (out / "checkpoint.pt").is_file():
        command.append("--resume")
    for key, value in overrides.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    log = out.parent / f"{out.name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT,
                              env=os.environ | {"OMP_NUM_THREADS": str(threads)}).returncode
    if code not in ((0, 3) if diverged_ok else (0,)):  # 3: diverged, recorded in summary.json
        raise subprocess.CalledProcessError(code, command)
    return json.loads(summary.read_text())


def sweep_rule(entry: str, args: argparse.Namespace) -> dict:
    """``targetprop sweep`` of one rule, or of ``RULE/KEY=VALUE``: the rule
    with that setting fixed (continued where an earlier call stopped);
    returns its sweep.json."""
    rule, _, fixed = entry.partition("/")
    out = Path(args.runs) / f"sweep_{run_name(entry, {})}"
    command = [sys.executable, "-m", "targetprop.cli", "sweep", "--rule", rule, "--data", args.data,
               "--space", args.space, "--trials", str(args.trials), "--epochs", str(args.epochs),
               "--seeds", str(args.seeds), "--jobs", str(args.jobs), "--out", str(out), "--device", args.device,
               *(["--arch", args.arch] if args.arch else []),
               *(item for setting in [*args.set, *([fixed] if fixed else [])] for item in ("--set", setting))]
    subprocess.run(command, check=True, env=os.environ | {"OMP_NUM_THREADS": str(args.threads)})
    return json.loads((out / "sweep.json").read_text())


def sweep_table(rules: list[str], args: argparse.Namespace) -> None:
    """Every rule swept alike; the table of their retrained best settings."""
    results_dir = Path(args.results)
    stem = args.name or f"{args.data.replace('-', '_')}_sweep_accuracy"
    table_file = results_dir / f"{stem}.json"
    table = json.loads(table_file.read_text()) if table_file.is_file() else {}
    for rule in rules:
        report = sweep_rule(rule, args)
        best, trials = report["best"], report["trials"]
        table[rule] = {"test_accuracy_mean": best["test_accuracy_mean"], "test_accuracy_std": best["test_accuracy_std"],
                       "test_accuracies": [run["test_accuracy"] for run in best["runs"]],
                       "val_accuracy": best["validation"], "settings": best["settings"], "arch": report["arch"],
                       "epochs": report["epochs"], "trials": report["finished"],
                       "pruned": sum(t["state"] == "PRUNED" for t in trials), "space": report["dimensions"],
                       "sweep_seconds": round(sum(t.get("seconds", 0) for t in trials), 1),
                       "retrain_seconds": round(sum(run["seconds"] for run in best["runs"]), 1)}
    lines = ["| rule | test accuracy | seeds | validation (best trial) | trials (pruned) | best settings "
             "| sweep + retrain minutes |",
             "|---|---|---|---|---|---|---|"]
    for rule, entry in table.items():
        settings = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in entry["settings"].items())
        lines.append(f"| `{rule}` | {100 * entry['test_accuracy_mean']:.2f} ± {100 * entry['test_accuracy_std']:.2f} % "
                     f"| {len(entry['test_accuracies'])} | {100 * entry['val_accuracy']:.2f} % | {entry['trials']} "
                     f"({entry['pruned']}) | {settings} | "
                     f"{entry['sweep_seconds'] / 60:.0f} + {entry['retrain_seconds'] / 60:.0f} |")
    write_results(results_dir, stem, table, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", default="bp,dtp,drl,ldrl")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--jobs", type=int, default=2, help="runs (a sweep: trials) in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--space", default=str(HERE / "search_space.yaml"))
    parser.add_argument("--runs", default=str(HERE / "runs"))
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--name", help="results file stem (default: <data>_accuracy)")
    parser.add_argument("--device", default="auto", help="of every run: auto, cpu, cuda")
    parser.add_argument("--arch", help="the network of every run, in place of the space's common arch")
    parser.add_argument("--trials", type=int, default=12, help="a sweep: finished trials per rule")
    parser.add_argument("--seeds", type=int, default=3, help="a sweep: seeds of the retrained best setting")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a sweep: a setting of every trial (repeatable)")
    parser.add_argument("--no-retrain", action="store_true",
                        help="report the chosen search run's test accuracy (trained without the validation "
                             "split) instead of retraining it on the whole training set: half the time")
    args = parser.parse_args()

    space = yaml.safe_load(Path(args.space).read_text())
    rules = args.rules.split(",")
    if "shared" in space:
        sweep_table(rules, args)
        return
    common, runs = space["common"] | ({"arch": args.arch} if args.arch else {}), Path(args.runs)
    jobs = [(rule, overrides) for rule in rules for overrides in space["rules"][rule]]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(
            lambda job: train(*job, common, args.epochs, runs, args.threads, args.data, device=args.device) | {
                "own_settings": job[1]}, jobs))

    chosen = {rule: max((r for r, job in zip(results, jobs) if job[0] == rule),
                        key=lambda r: r["val_accuracy"]) for rule in rules}
    if args.no_retrain:
        finals = chosen
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            finals = dict(zip(rules, pool.map(
                lambda rule: train(rule, chosen[rule]["own_settings"], common, args.epochs, runs,
                                   args.threads, args.data, final=True, device=args.device), rules)))

    results_dir = Path(args.results)
    stem = args.name or f"{args.data.replace('-', '_')}_accuracy"
    table_file = results_dir / f"{stem}.json"
    table = json.loads(table_file.read_text()) if table_file.is_file() else {}
    for rule in rules:
        mine = [r for r, job in zip(results, jobs) if job[0] == rule]
        best, final = chosen[rule], finals[rule]
        table[rule] = {"test_accuracy": final["test_accuracy"], "val_accuracy": best["val_accuracy"],
                       "settings": best["own_settings"], "epochs": final["epochs"],
                       "seconds": round(final["seconds"], 1), "searched": len(mine),
                       "retrained": not args.no_retrain,
                       "all": [{"settings": r["own_settings"], "val_accuracy": r["val_accuracy"],
                                "test_accuracy": r["test_accuracy"]} for r in mine]}
    lines = ["| rule | test accuracy | validation accuracy (search) | chosen settings "
             "| settings tried | seconds |",
             "|---|---|---|---|---|---|"]
    for rule, entry in table.items():
        settings = ", ".join(f"{k}={v}" for k, v in entry["settings"].items()) or "defaults"
        lines.append(f"| `{rule}` | {100 * entry['test_accuracy']:.2f} % | "
                     f"{100 * entry['val_accuracy']:.2f} % | {settings} | {entry['searched']} | "
                     f"{entry['seconds']:.0f} |")
    write_results(results_dir, stem, table, lines)


if __name__ == "__main__":
    main()
