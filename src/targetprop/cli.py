"""The ``targetprop`` command: ``train``, ``sweep``, ``evaluate``,
``predict``, ``rules``, ``plot``, ``bench``, ``sample`` and ``complete``."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch

from .core.architectures import architecture_help
from .running.checkpoint import CHECKPOINTS, CheckpointError
from .running.config import ConfigError, load_config
from .running.data import DatasetNotAvailable

_ARCHITECTURES = architecture_help().replace("%", "%%")  # argparse formats help strings

# Flags that are shortcuts for settings; every other setting goes through --set.
_TRAIN_FLAGS = ("data", "rule", "arch", "epochs", "batch_size", "seed", "device", "labels", "log")


def _launch(argv: list[str], nproc: int, out: str, stop_signals: list[int]) -> int:
    """``targetprop train --nproc N``: the same command in N processes under
    torchrun (:mod:`running.distributed`), started in a session of its own
    so that a stop signal reaches it once, relayed from here (and from it to
    every process, which all stop at the same batch). This process holds the
    run directory for them; a worker that fails ends the run."""
    import subprocess

    from .running.rundir import HELD_BY_LAUNCHER, RunLock

    relayed = ",".join(dict.fromkeys(["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT",
                                      *(signal.Signals(n).name for n in stop_signals)]))
    command = [sys.executable, "-m", "targetprop.running.launch", "--standalone", "--nproc-per-node", str(nproc),
               "--signals-to-handle", relayed, "--shutdown-timeout", "120", "-m", "targetprop.cli", *argv]
    lock = RunLock(out)
    received: list[int] = []
    process = subprocess.Popen(command, env=os.environ | {HELD_BY_LAUNCHER: str(lock.path.resolve())},
                               start_new_session=True)

    def relay(signum, frame):
        received.append(signum)
        process.send_signal(signum)

    before = {number: signal.signal(number, relay) for number in stop_signals}
    try:
        code = process.wait()
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
        lock.release(remove_if_new=True)
    if received:
        return 128 + received[0]  # rank 0 said where it stopped
    if code not in (0, 2, 3, 4):  # explained by the workers: bad input, diverged, a peer lost
        how = f"was killed by signal {code - 128}" if code > 128 else f"failed with exit code {code}"
        print(f"error: a worker process {how}; {_kept(out)}", file=sys.stderr)
    return code


def _kept(out: str) -> str:
    """What a run that ended early leaves, and how to go on."""
    return f"the last good checkpoint in {out} is intact: continue with targetprop train --resume --out {out}"


def _without(argv: list[str], flag: str) -> list[str]:
    """``argv`` less ``flag`` and its value."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == flag:
            skip = True
        elif not item.startswith(f"{flag}="):
            out.append(item)
    return out


def _train(args: argparse.Namespace) -> int:
    from .running.distributed import PeerLost
    from .running.trainer import Trainer, TrainingDiverged, TrainingInterrupted

    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    main_process = int(os.environ.get("RANK", "0")) == 0
    values = {key: getattr(args, key) for key in _TRAIN_FLAGS}
    if args.no_progress:
        values["progress"] = False
    config_file = args.config
    if args.resume and config_file is None and (Path(args.out) / "config.yaml").is_file():
        config_file = Path(args.out) / "config.yaml"
    config = load_config(config_file, args.set, **values)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from .running.setup import signal_numbers, validate_config

        config = validate_config(config)  # bad settings stop here, before any process starts
        return _launch(_without(args.argv, "--nproc"), args.nproc, args.out, signal_numbers(config.stop_signals))
    trainer = Trainer(config, args.out, resume=args.resume)
    try:
        summary = trainer.run()
    except KeyboardInterrupt:
        if main_process:
            print(f"\nstopped at once by a second Ctrl-C; {_kept(args.out)}", file=sys.stderr)
        return 128 + signal.SIGINT
    except TrainingInterrupted as stop:
        if main_process:
            print(f"\n{stop}", file=sys.stderr)
        return 128 + (stop.signal or signal.SIGINT)
    except TrainingDiverged as error:
        if main_process:
            print(f"error: {error}", file=sys.stderr)
        return 3
    except PeerLost as error:  # one line from each surviving process
        print(f"error: process {os.environ.get('RANK', '?')}: {error}; {_kept(args.out)}", file=sys.stderr)
        return 4
    if not main_process:
        return 0
    shown = (("test_solved", "test_loss") if summary.get("test_solved") is not None  # real targets
             else ("test_accuracy", "test_reconstruction"))
    figures = [f"{key.replace('_', ' ')} {summary[key]:.4f}" for key in shown if summary.get(key) is not None]
    print(f"{', '.join(figures)} ({summary['rule']} on {summary['data']}, "
          f"{summary['epochs']} epochs, {summary['seconds']:.1f}s) -> {args.out}")
    if summary.get("stopped_early"):
        print(f"stopped early: {summary['stopped_early']}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .running.setup import signal_numbers, validate_config
    from .running.space import load_space
    from .running.sweep import SweepPlan, default_name, open_study, retrain_best, run_trials, run_workers, \
        write_report
    from .running.trainer import TrainingInterrupted

    for flag in ("trials", "jobs", "seeds"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    values = {key: getattr(args, key) for key in ("data", "rule", "arch", "epochs", "seed", "device")}
    base = validate_config(load_config(args.config, args.set, **values))
    if base.val_size == 0:
        raise ConfigError("a sweep scores its trials on the validation split: val_size must be > 0")
    space = load_space(args.space, base.rule, base)
    study = args.study or default_name(base.rule, base.data, base.arch)
    out = Path(args.out or Path("sweeps") / study)
    if args.storage is None:
        out.mkdir(parents=True, exist_ok=True)
    plan = SweepPlan(base, space, args.trials, args.storage or f"sqlite:///{out / 'study.db'}", study, out,
                     prune=not args.no_prune)
    if args.worker is not None:
        run_trials(plan, args.worker)
        return 0
    print(f"sweep {study!r} of {base.rule} on {base.data}, {base.arch}, {base.epochs} epochs a trial, "
          f"{args.trials} trials: {'; '.join(d.describe() for d in space.dimensions) or 'nothing drawn'}"
          + (f" (not read by {base.rule}: {', '.join(space.unused)})" if space.unused else ""), flush=True)
    again = f"run the same command to continue the sweep (study {study!r} in {plan.storage})"
    try:
        if args.jobs > 1:
            open_study(plan)  # created, or checked against this search, before any worker starts
            code = run_workers(_without(args.argv[1:], "--jobs"), args.jobs, signal_numbers(base.stop_signals))
            if code:
                print(f"error: the sweep's workers stopped (exit code {code}); {again}", file=sys.stderr)
                return code
        else:
            run_trials(plan)
    except TrainingInterrupted as stop:
        print(f"\nthe sweep stopped; the trial in flight kept its checkpoint; {again}", file=sys.stderr)
        return 128 + (stop.signal or signal.SIGINT)
    except KeyboardInterrupt:
        print(f"\nthe sweep stopped; {again}", file=sys.stderr)
        return 128 + signal.SIGINT
    retrained = None if args.no_retrain else retrain_best(plan, args.seeds)
    path = write_report(plan, retrained)
    if retrained is not None:
        drawn = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in retrained["settings"].items())
        spread = f" ± {retrained['test_accuracy_std']:.4f}" if args.seeds > 1 else ""
        accuracy = (f"test accuracy {retrained['test_accuracy_mean']:.4f}{spread}"
                    if retrained["test_accuracy_mean"] is not None else "no test accuracy")
        print(f"best: trial {retrained['trial']}, validation {retrained['validation']:.4f} ({drawn}); retrained on "
              f"the whole training set ({args.seeds} seed{'s' * (args.seeds > 1)}): {accuracy}")
    print(path)
    return 0


def _rules(args: argparse.Namespace) -> int:
    from .registry import NETWORK_KINDS, RULES, rule_settings
    from .running.config import run_settings

    if args.name is None:
        width = max(map(len, RULES))
        for name, recipe in RULES.items():
            print(f"{name:<{width}}  {recipe.summary}")
        print("\nthe settings of one rule: targetprop rules NAME")
        return 0
    try:
        specs = rule_settings(args.name)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    print(f"{args.name}: {RULES[args.name].summary}\n\nthe networks it trains:")
    for kind in RULES[args.name].cls.network_kinds:
        print(f"  {kind}: {NETWORK_KINDS[kind].summary}")
    print(f"\nsettings of {args.name} (--set KEY=VALUE):")
    for spec in specs.values():
        print(f"  {spec.describe()}")
    if not specs:
        print("  none")
    print("\nrun-level settings (every rule):")
    for spec in run_settings().values():
        print(f"  {spec.describe()}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .plotting.curves import plot_runs

    out = args.out or (args.runs[0] if len(args.runs) == 1 else "plots")
    for path in plot_runs(args.runs, out):
        print(path)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .running.bench import VARIANTS, count_flops, profile_steps, time_rules
    from .running.data import load_dataset
    from .registry import RULES
    from .running.setup import resolve_device

    if args.repeats < 1 or args.batch_size < 1:
        raise ConfigError(f"--repeats must be >= 1 and --batch-size >= 1, got {args.repeats} and {args.batch_size}")
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    for rule in rules:
        if rule not in RULES:
            raise ConfigError(f"unknown rule {rule!r}; choose one of: {', '.join(RULES)}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for variant in variants:
        if variant not in VARIANTS:
            raise ConfigError(f"unknown variant {variant!r}; choose from: {', '.join(VARIANTS)}")
    device = resolve_device(args.device)
    torch.set_flush_denormal(True)  # as a training run does by default (Config.flush_denormal)
    splits = load_dataset(args.data, val_size=0, seq_len=args.seq_len, tree_depth=args.tree_depth)
    x, y = (t[:args.batch_size].to(device) for t in splits.train.tensors)
    shared = dict(arch=args.arch, num_classes=splits.num_outputs, feedback_iterations=args.feedback_iterations,
                  input_shape=splits.input_shape, variants=tuple(variants))
    try:
        result = time_rules(rules, x, y, repeats=args.repeats, **shared)
        profiled = profile_steps(rules, x, y, **shared) if args.profile else {}
        if args.flops:
            for rule, flops in count_flops(rules, x, y, **{k: v for k, v in shared.items() if k != "variants"}).items():
                result[rule]["flops_per_example"] = flops
    except ValueError as error:  # the architecture, or the network against a rule or the data
        raise ConfigError(str(error)) from None
    print(f"{args.data}, {args.arch}, batch {len(y)}, {device}, {torch.get_num_threads()} threads")
    print(f"{'rule':<20}{'step ms':>10}{'quartiles':>18}{'x bp':>8}"
          + (f"{'MFLOP/ex':>10}" if args.flops else "")
          + (f"{'ops/step':>10}{'products':>10}{'optimizer':>10}" if profiled else ""))
    for rule, entry in result.items():
        if profiled:
            entry.update(profiled[rule], product_share=profiled[rule]["product_ms"] / entry["step_ms"],
                         optimizer_share=profiled[rule]["optimizer_ms"] / entry["step_ms"])
        ratio = entry.get("ratio_to_bp")
        low, high = entry["quartiles"]
        print(f"{rule:<20}{entry['step_ms']:>10.2f}{f'{low:.2f}–{high:.2f}':>18}"
              + (f"{ratio:>8.2f}" if ratio is not None else f"{'':>8}")
              + (f"{entry['flops_per_example'] / 1e6:>10.4g}" if args.flops else "")
              + (f"{entry['ops_per_step']:>10.0f}{entry['product_share']:>10.0%}{entry['optimizer_share']:>10.0%}"
                 if profiled else ""))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _load_trained(args: argparse.Namespace):
    """The run as ``--checkpoint`` says; by default its best checkpoint where it has one, else its last."""
    from .running.runs import load_run

    checkpoint = args.checkpoint or ("best" if (Path(args.run) / CHECKPOINTS["best"]).is_file() else "last")
    return load_run(args.run, checkpoint=checkpoint), checkpoint


def _evaluate(args: argparse.Namespace) -> int:
    from .running.checkpoint import write_text
    from .running.evaluation import evaluate_run

    run, checkpoint = _load_trained(args)
    result = {"checkpoint": checkpoint, **evaluate_run(run, args.data)}
    out = Path(args.out or Path(args.run) / f"evaluation-{checkpoint}.json")
    write_text(out, json.dumps(result, indent=2) + "\n")
    scores = ", ".join(f"{key} {value:.4f}" for key, value in result.items() if isinstance(value, float))
    print(f"{scores} ({result['data']}, {result['examples']} examples; {checkpoint} checkpoint, "
          f"{result['epoch']} epochs trained) -> {out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .running.evaluation import predict_run, write_predictions

    run, checkpoint = _load_trained(args)
    predictions = predict_run(run, args.data)
    path = write_predictions(predictions, args.out)
    print(f"{', '.join(f'{k} {v.shape}' for k, v in predictions.items())} for {args.data} "
          f"({checkpoint} checkpoint, {run.epoch} epochs trained) -> {path}")
    return 0


def _load_generative(run_dir: str):
    from .running.runs import load_run

    run = load_run(run_dir)
    if not hasattr(run.net, "sample"):
        raise ConfigError(f"{run_dir} was trained with rule {run.config.rule!r}, whose network cannot "
                          "generate: train a generative stack (rules generative, generative-bp)")
    if run.info.image_shape is None or len(run.info.image_shape) != 2:
        raise ConfigError(f"{run.config.data} is not a dataset of images: nothing to draw")
    return run


def _sample(args: argparse.Namespace) -> int:
    from .plotting.images import save_image_rows
    from .rules.generative.inference import generate, generate_class

    run = _load_generative(args.run)
    if args.n < 1 or (args.steps is not None and args.steps < 1):
        raise ConfigError("--n and --steps must be >= 1")
    generator = torch.Generator().manual_seed(args.seed)
    steps = args.steps or args.chain_length
    try:
        if args.label is not None:
            states = [generate_class(run.net, args.label, args.n, steps, args.noise, generator)]
        else:
            # chains start from training codes (or their spread): the data are loaded only for those
            pool = None if run.net.top.analytic_sampling else run.splits.train.tensors[0]
            states = generate(run.net, pool, args.n, steps, args.start, generator)
    except ValueError as problem:
        raise ConfigError(str(problem)) from None
    to_image = run.info.to_unit_range
    shape = run.info.image_shape
    if args.steps is None:  # a grid of the final samples
        final = to_image(states[-1])
        width = int(round(len(final) ** 0.5))
        rows = [final[i:i + width] for i in range(0, len(final), width)]
        path = save_image_rows(rows, shape, args.out)
    else:  # chains over time: one row per chain, columns spread over the steps
        chains = min(args.n, 10)
        picks = sorted({round(i * (len(states) - 1) / 9) for i in range(10)}) if len(states) > 1 else [0]
        rows = [torch.stack([to_image(states[k][c]) for k in picks]) for c in range(chains)]
        path = save_image_rows(rows, shape, args.out, titles=[f"step {k + 1}" for k in picks])
    print(path)
    return 0


def _complete(args: argparse.Namespace) -> int:
    from .plotting.images import save_image_rows
    from .rules.generative.inference import complete, completion_error, part_features

    run = _load_generative(args.run)
    x, y = run.splits.test.tensors
    net, to_image = run.net, run.info.to_unit_range
    if args.hide == "label":
        if not net.labelled:
            raise ConfigError("--hide label needs an image+label stack (modalities=image+label)")
        predicted = net.label_probabilities(net.complete(x, "label", args.steps)).argmax(1)
        name = run.info.class_name
        titles = [f"{name(p)}\n(truth: {name(t)})" for p, t in zip(predicted[:args.n].tolist(), y[:args.n].tolist())]
        path = save_image_rows([to_image(x[:args.n])], run.info.image_shape, args.out, titles=titles)
        print(f"test accuracy by label completion (Algorithm 6, {args.steps} steps): "
              f"{(predicted == y).double().mean().item():.4f}")
        print(path)
        return 0
    try:
        completed = complete(net, x[:args.n], args.hide, args.steps, args.noise,
                             torch.Generator().manual_seed(args.seed))
        error, baseline = completion_error(net, x, args.hide, run.splits.train.tensors[0].mean(0),
                                           args.steps)
    except ValueError as problem:
        raise ConfigError(str(problem)) from None
    shown = to_image(x[:args.n]).clone()
    shown[:, part_features(net, args.hide)] = 0.5  # grey where the input is hidden
    path = save_image_rows([shown, to_image(completed), to_image(x[:args.n])], run.info.image_shape,
                           args.out, row_labels=["input", "completed", "truth"])
    change = 100 * (1 - error / baseline)
    print(f"test mean squared error of the {args.hide} half: completion {error:.4f}, "
          f"training-mean fill {baseline:.4f} ({abs(change):.1f}% {'lower' if change >= 0 else 'higher'})")
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="targetprop", description="Target propagation for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_train(sub)
    _add_sweep(sub)
    _add_use(sub)
    _add_inspection(sub)
    _add_generation(sub)
    return parser


def _add_train(sub) -> None:
    train = sub.add_parser("train", help="train a network on a dataset with one rule",
                           epilog="settings for --set: `targetprop rules NAME` lists the rule's own "
                                  "and the run-level ones, with defaults and meanings")
    train.add_argument("--config", help="YAML file of settings")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any setting (repeatable), e.g. --set forward_lr=3e-4")
    train.add_argument("--data", help="fashion-mnist, mnist-5k, digits, mnist1d, or your own: "
                                      "path/to/file.npz, imagefolder:DIR, cifar10 (--set data_root=DIR)")
    train.add_argument("--rule")
    train.add_argument("--arch", help=f"the network (default mlp:256x5): {_ARCHITECTURES}")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", dest="batch_size", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--labels", type=int,
                       help="keep labels for N training examples (balanced over classes); the "
                            "rest train unlabelled where the rule learns from unlabelled examples "
                            "(bengio2014, generative) and are left out otherwise")
    train.add_argument("--log", choices=("none", "tensorboard"),
                       help="tensorboard: also write the per-epoch scores as TensorBoard event files in --out")
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--nproc", type=int, default=1,
                       help="data-parallel processes (torch.distributed; gloo on CPU, NCCL on CUDA); "
                            "the same as torchrun --nproc-per-node N -m targetprop.cli train ...")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)


def _add_sweep(sub) -> None:
    sweep = sub.add_parser("sweep", help="search a rule's settings (Optuna: seeded TPE, median pruner), then "
                                         "retrain the best on the whole training set",
                           epilog="the search space file: docs 'Sweeps'; a second call with the same --study "
                                  "continues the sweep")
    sweep.add_argument("--rule", required=True)
    sweep.add_argument("--space", required=True,
                       help="YAML search space: 'shared' ranges for every rule, 'rules: {NAME: ...}' a rule's own")
    sweep.add_argument("--data", help="as for train (default fashion-mnist)")
    sweep.add_argument("--arch", help="as for train (default mlp:256x5)")
    sweep.add_argument("--epochs", type=int, help="epochs of every trial and of the retrained runs")
    sweep.add_argument("--trials", type=int, default=12,
                       help="finished trials (completed or pruned) the study holds in the end")
    sweep.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db); several "
                                         "sweeps, processes or machines can share one")
    sweep.add_argument("--study", help="study name (default RULE-DATA-ARCH)")
    sweep.add_argument("--out", help="folder of the trials' runs, the retrained runs, sweep.json and the "
                                     "plots (default sweeps/STUDY)")
    sweep.add_argument("--jobs", type=int, default=1, help="processes running trials side by side")
    sweep.add_argument("--seeds", type=int, default=1, help="retrain the best setting with this many seeds")
    sweep.add_argument("--seed", type=int, help="seed of every trial's run and of the sampler")
    sweep.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    sweep.add_argument("--config", help="YAML file of settings every trial starts from")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a setting every trial starts from (repeatable)")
    sweep.add_argument("--no-prune", action="store_true", help="run every trial to the end")
    sweep.add_argument("--no-retrain", action="store_true", help="stop after the trials")
    sweep.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # one of --jobs' processes
    sweep.set_defaults(func=_sweep)


def _add_use(sub) -> None:
    """``evaluate`` and ``predict``: a trained run on data."""
    evaluate = sub.add_parser("evaluate", help="score a trained run on its test split or other data")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("--data", help="default: the run's own test split; else a dataset's test split "
                                         "(as --data of train takes) or every example of a .npz file (x, y)")
    evaluate.add_argument("--checkpoint", choices=sorted(CHECKPOINTS),
                          help="best: after the epoch of the best validation score; last: where the run "
                               "stopped (default: best where the run has one, else last)")
    evaluate.add_argument("--out", help="JSON file of the scores (default RUN/evaluation-CHECKPOINT.json)")
    evaluate.set_defaults(func=_evaluate)

    predict = sub.add_parser("predict", help="a trained run's predicted classes and probabilities for a file")
    predict.add_argument("run", help="run directory")
    predict.add_argument("--data", required=True, help=".npz file with an array x of examples (as trained on)")
    predict.add_argument("--checkpoint", choices=sorted(CHECKPOINTS), help="as for evaluate")
    predict.add_argument("--out", default="predictions.npz",
                         help=".npz file: classes (N,) and probabilities (N, K); outputs for real targets")
    predict.set_defaults(func=_predict)


def _add_inspection(sub) -> None:
    """``rules``, ``plot`` and ``bench``."""
    rules = sub.add_parser("rules", help="list the rules, or one rule's settings")
    rules.add_argument("name", nargs="?", help="a rule: list its settings with defaults and meanings")
    rules.set_defaults(func=_rules)

    plot = sub.add_parser("plot", help="PNG figures of one or more runs")
    plot.add_argument("runs", nargs="+", help="run directories")
    plot.add_argument("--out", help="folder for the PNGs (default: the run, or ./plots)")
    plot.set_defaults(func=_plot)

    bench = sub.add_parser("bench", help="time one training step per rule")
    bench.add_argument("--rules", default="bp,tp,dtp,drl,ldrl")
    bench.add_argument("--data", default="fashion-mnist")
    bench.add_argument("--arch", default="mlp:256x5", help=_ARCHITECTURES)
    bench.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    bench.add_argument("--seq-len", dest="seq_len", type=int, default=60,
                       help="length of a generated sequence task (adding, temporal-order, ...)")
    bench.add_argument("--tree-depth", dest="tree_depth", type=int, default=5,
                       help="depth of the generated trees of listops")
    bench.add_argument("--repeats", type=int, default=60)
    bench.add_argument("--feedback-iterations", dest="feedback_iterations", type=int, default=1)
    bench.add_argument("--device", default="auto")
    bench.add_argument("--variants", default="eager",
                       help="comma-separated, timed side by side: eager, compile (the rule's part of the "
                            "step), compile-feedback (its feedback objective alone), bf16, bf16+compile")
    bench.add_argument("--profile", action="store_true",
                       help="also profile each rule (torch.profiler): operations per step and the shares of "
                            "time in matrix products and in the optimizers' steps")
    bench.add_argument("--flops", action="store_true",
                       help="also count floating-point operations per training example (torch.utils.flop_counter: "
                            "matrix products and convolutions of one training step)")
    bench.add_argument("--json", help="write the results here")
    bench.set_defaults(func=_bench)


def _add_generation(sub) -> None:
    """``sample`` and ``complete``: generative stacks."""
    sample = sub.add_parser("sample", help="generate inputs from a trained generative stack")
    sample.add_argument("run", help="run directory (rule generative or generative-bp)")
    sample.add_argument("--n", type=int, default=100, help="number of samples")
    sample.add_argument("--out", default="samples.png", help="PNG file")
    sample.add_argument("--steps", type=int,
                        help="show the chain over time: this many steps of Algorithm 3, one row per chain")
    sample.add_argument("--chain-length", dest="chain_length", type=int, default=20,
                        help="steps of the top-level chain per sample (denoising tops)")
    sample.add_argument("--start", choices=("noise", "data"), default="noise",
                        help="start chains from noise or from training codes")
    sample.add_argument("--label", type=int, help="image+label stacks: images of this class")
    sample.add_argument("--noise", type=float, default=1.0,
                        help="with --label: annealed noise of the completion, in units of the top's σ")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=_sample)

    complete = sub.add_parser("complete", help="fill in a hidden part by MAP inference (Algorithm 6)")
    complete.add_argument("run", help="run directory of a multi-modal stack (modalities halves or image+label)")
    complete.add_argument("--hide", required=True, choices=("upper", "lower", "label"))
    complete.add_argument("--n", type=int, default=10, help="test examples shown")
    complete.add_argument("--steps", type=int, default=10, help="iterations of Algorithm 6")
    complete.add_argument("--noise", type=float, default=0.0,
                          help="> 0: the MCMC variant, annealed noise in units of the top's σ")
    complete.add_argument("--out", default="completion.png", help="PNG file")
    complete.add_argument("--seed", type=int, default=0)
    complete.set_defaults(func=_complete)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ConfigError, DatasetNotAvailable, CheckpointError, FileExistsError,
            FileNotFoundError) as error:
        if int(os.environ.get("RANK", "0")) == 0:  # data-parallel processes fail alike: one says why
            print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training started (a run in progress stops with a checkpoint)
        print("\nstopped before training started; nothing was trained", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # output piped into a reader that closed early (head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
