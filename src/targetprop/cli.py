"""The ``targetprop`` command: train, plot, bench."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .config import Config, ConfigError, load_config
from .data import DatasetNotAvailable

# Flags that are shortcuts for settings; every other setting goes through --set.
_TRAIN_FLAGS = ("data", "rule", "arch", "epochs", "batch_size", "seed", "device", "labels")


def _train(args: argparse.Namespace) -> int:
    from .training import Trainer, TrainingDiverged, TrainingInterrupted, validate_config

    values = {key: getattr(args, key) for key in _TRAIN_FLAGS}
    if args.no_progress:
        values["progress"] = False
    config_file = args.config
    if args.resume and config_file is None and (Path(args.out) / "config.yaml").is_file():
        config_file = Path(args.out) / "config.yaml"
    config = load_config(config_file, args.set, **values)
    validate_config(config)
    try:
        summary = Trainer(config, args.out, resume=args.resume).run()
    except TrainingInterrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        return 130
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    print(f"test accuracy {summary['test_accuracy']:.4f} ({summary['rule']} on {summary['data']}, "
          f"{summary['epochs']} epochs, {summary['seconds']:.1f}s) -> {args.out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .plotting import plot_runs

    out = args.out or (args.runs[0] if len(args.runs) == 1 else "plots")
    for path in plot_runs(args.runs, out):
        print(path)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import time_rules
    from .data import load_dataset
    from .rules import RULES
    from .training import resolve_device

    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    for rule in rules:
        if rule not in RULES:
            raise ConfigError(f"unknown rule {rule!r}; choose one of: {', '.join(RULES)}")
    device = resolve_device(args.device)
    splits = load_dataset(args.data, val_size=0)
    x, y = (t[:args.batch_size].to(device) for t in splits.train.tensors)
    result = time_rules(rules, x, y, arch=args.arch, num_classes=splits.num_classes,
                        repeats=args.repeats, feedback_iterations=args.feedback_iterations)
    print(f"{args.data}, {args.arch}, batch {len(y)}, {device}, {torch.get_num_threads()} threads")
    print(f"{'rule':<8}{'step ms':>10}{'x bp':>8}")
    for rule, entry in result.items():
        ratio = entry.get("ratio_to_bp")
        print(f"{rule:<8}{entry['step_ms']:>10.2f}{ratio:>8.2f}" if ratio is not None
              else f"{rule:<8}{entry['step_ms']:>10.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="targetprop", description="Target propagation for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a network on a dataset with one rule",
                           epilog=f"settings for --set: {', '.join(Config.keys())}")
    train.add_argument("--config", help="YAML file of settings")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any setting (repeatable), e.g. --set forward_lr=3e-4")
    train.add_argument("--data")
    train.add_argument("--rule")
    train.add_argument("--arch", help="e.g. mlp:256x5 or mlp:512-256")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", dest="batch_size", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--labels", type=int,
                       help="keep labels for N training examples (balanced over classes); the "
                            "rest train unlabelled (or drop them: --set use_unlabelled=false)")
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    plot = sub.add_parser("plot", help="PNG figures of one or more runs")
    plot.add_argument("runs", nargs="+", help="run directories")
    plot.add_argument("--out", help="folder for the PNGs (default: the run, or ./plots)")
    plot.set_defaults(func=_plot)

    bench = sub.add_parser("bench", help="time one training step per rule")
    bench.add_argument("--rules", default="bp,tp,dtp,drl,ldrl")
    bench.add_argument("--data", default="fashion-mnist")
    bench.add_argument("--arch", default="mlp:256x5")
    bench.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    bench.add_argument("--repeats", type=int, default=60)
    bench.add_argument("--feedback-iterations", dest="feedback_iterations", type=int, default=1)
    bench.add_argument("--device", default="auto")
    bench.add_argument("--json", help="write the results here")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetNotAvailable, CheckpointError, FileExistsError,
            FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
