"""``targetprop sweep``: a hyper-parameter search of one rule, on Optuna.

Every trial is an ordinary run (``--out``/trials/N) with the settings a
seeded TPE sampler draws from the search space (:mod:`running.space`),
scored by its final validation accuracy (else minus the validation loss or
reconstruction error); the median pruner stops a trial whose per-epoch score
falls below the median of earlier trials at that epoch. The study lives in
its storage (an SQLite file by default), so a second call continues it: the
study grows to ``trials`` finished trials, a trial stopped by a signal
resumes from its checkpoint, and one whose process was killed is run again
with its settings. Then the best setting is retrained on the whole training
set (no validation split), once per seed, and its test accuracy reported.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import CHECKPOINTS, write_text
from .config import Config, ConfigError
from .metrics import validation_score
from .setup import validate_config
from .space import SearchSpace
from .trainer import RESUMABLE_CHANGES, Trainer, TrainingDiverged, TrainingInterrupted

__all__ = ["SweepPlan", "open_study", "run_trials", "run_workers", "retrain_best", "write_report", "default_name"]

_HEARTBEAT_S = 10  # a trial whose process was killed is noticed after 3 missed beats
_FINISHED = ("COMPLETE", "PRUNED")


@dataclass(frozen=True)
class SweepPlan:
    """One sweep: the settings every trial starts from (``base``: rule,
    data, network, epochs), what it draws (``space``), how many finished
    trials the study holds in the end, and where it lives."""
    base: Config
    space: SearchSpace
    trials: int
    storage: str
    study: str
    out: Path
    prune: bool = True

    def identity(self) -> dict:
        """What a study is a search of, a second call must agree: the rule,
        data, network, epochs, space, and every other setting the trials
        start from that is not its default, except those a resumed run may
        change (a continued trial resumes under the new ones)."""
        b = self.base
        defaults = validate_config(Config(rule=b.rule, data=b.data, arch=b.arch, epochs=b.epochs)).to_dict()
        given = {key: value for key, value in b.to_dict().items()
                 if key not in RESUMABLE_CHANGES and defaults.get(key) != value}
        return {"rule": b.rule, "data": b.data, "arch": b.arch, "epochs": b.epochs, **self.space.describe(),
                "settings": given}


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("targetprop sweep needs Optuna: pip install 'targetprop[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the sweep says what happened to each trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def default_name(rule: str, data: str, arch: str) -> str:
    """A study name from what it searches: ``dtp-fashion-mnist-mlp-256x5``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"{rule}-{Path(data).stem if '/' in data else data}-{arch}").strip("-")


def open_study(plan: SweepPlan, worker: int = 0):
    """The plan's study, created or continued. The TPE sampler is seeded by
    the run's seed, the worker's number and the trials the study holds, so
    that workers, and a call that continues the study, draw new settings."""
    optuna = _optuna()
    try:
        storage = optuna.storages.RDBStorage(plan.storage, heartbeat_interval=_HEARTBEAT_S,
                                             grace_period=3 * _HEARTBEAT_S,
                                             heartbeat_stale_trial_callback=_continue_later)
    except Exception as error:  # a bad URL, a missing driver, a file that cannot be opened
        raise ConfigError(f"cannot open the sweep's storage {plan.storage}: {_first_line(error)}") from None
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, plan.base.epochs // 4))
              if plan.prune else optuna.pruners.NopPruner())
    study = optuna.create_study(storage=storage, study_name=plan.study, direction="maximize", pruner=pruner,
                                load_if_exists=True)
    seed = int(np.random.SeedSequence([plan.base.seed, worker, len(study.trials)]).generate_state(1)[0])
    startup = min(10, max(3, plan.trials // 4))  # random trials before TPE models the results
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    stored = study.user_attrs.get("searches")
    if stored is None:
        study.set_user_attr("searches", plan.identity())
    elif stored != json.loads(json.dumps(plan.identity())):
        changed = ", ".join(f"{key} {stored.get(key)!r} (now {value!r})" for key, value in plan.identity().items()
                            if stored.get(key) != json.loads(json.dumps(value)))
        raise ConfigError(f"study {plan.study!r} in {plan.storage} is a search of another kind: {changed}; "
                          "give another --study")
    return study


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _continue_later(study, trial) -> None:
    """Queue a trial that did not finish (stopped by a signal, or its
    process killed) again, with its settings, to resume from its checkpoint
    (``continues``: the trial whose directory it trains in; ``after``: the
    one it replaces, queued once)."""
    if any(t.user_attrs.get("after") == trial.number for t in study.get_trials(deepcopy=False)):
        return
    origin = trial.user_attrs.get("continues", trial.number)
    study.enqueue_trial(trial.params, user_attrs={"continues": origin, "after": trial.number}, skip_if_exists=False)


def _finished(study) -> int:
    return sum(t.state.name in _FINISHED for t in study.get_trials(deepcopy=False))


def run_trials(plan: SweepPlan, worker: int = 0) -> None:
    """Run trials in this process until the study holds ``plan.trials``
    finished ones (several processes may share the study)."""
    optuna = _optuna()
    study = open_study(plan, worker)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        if trial.user_attrs.get("interrupted"):
            _continue_later(study, trial)

    def enough(study, trial) -> None:
        if _finished(study) >= plan.trials:
            study.stop()

    if _finished(study) < plan.trials:
        study.optimize(lambda trial: _objective(plan, trial, worker), callbacks=[enough], catch=())


def _objective(plan: SweepPlan, trial, worker: int) -> float:
    optuna = _optuna()
    trial.set_user_attr("worker", worker)
    settings = plan.space.fixed | {d.name: d.suggest(trial) for d in plan.space.dimensions}
    origin = trial.user_attrs.get("continues", trial.number)
    out = plan.out / "trials" / str(origin)
    resume = (out / CHECKPOINTS["last"]).is_file()
    drawn = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    name = f"trial {trial.number}{f' (continues {origin})' * (origin != trial.number)}"
    print(f"{name}: {drawn} (log: {out / 'log.txt'})", flush=True)

    def report(trainer: Trainer, row: dict) -> None:
        score = validation_score(row)
        if row["epoch"] < 1 or score is None:
            return
        trial.report(score, row["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}: validation {score:.4f} below the median")

    config = plan.base.update(settings | {"progress": False})
    started, console = time.perf_counter(), sys.stdout
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "a", buffering=1) as log, contextlib.redirect_stdout(log):
        trainer = Trainer(config, out, resume=resume, on_epoch=report)
        try:
            for row in trainer.rows:  # a resumed trial's earlier epochs count for the pruner
                if row["epoch"] >= 1 and validation_score(row) is not None:
                    trial.report(validation_score(row), row["epoch"])
            summary = trainer.run()
        except TrainingInterrupted:
            trial.set_user_attr("interrupted", True)
            raise
        except (TrainingDiverged, optuna.TrialPruned) as stopped:
            why = str(stopped).split(";")[0]
            if isinstance(stopped, TrainingDiverged):
                trial.set_user_attr("diverged", why)
            print(f"{name}: {why} ({time.perf_counter() - started:.0f} s)", file=console, flush=True)
            raise optuna.TrialPruned(why) from None
        finally:
            trial.set_user_attr("seconds", round(trainer.seconds, 1))  # training time, over resumes too
    score = validation_score(trainer.rows[-1])
    print(f"{name}: validation {score:.4f} after {summary['epochs']} epochs ({time.perf_counter() - started:.0f} s)",
          flush=True)
    return score


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_workers(argv: list[str], jobs: int, stop_signals: list[int]) -> int:
    """``--jobs K``: K processes of this sweep sharing its study, each in a
    session of its own with a K-th of the CPU threads; a stop signal sent
    here reaches each of them once. Returns the first failing exit code."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = os.environ | {"OMP_NUM_THREADS": threads}
    processes = [subprocess.Popen([sys.executable, "-m", "targetprop.cli", "sweep", *argv, "--jobs", "1",
                                   "--worker", str(worker), "--set", f"threads={threads}"],
                                  env=env, start_new_session=True) for worker in range(1, jobs + 1)]
    received: list[int] = []

    def relay(signum, frame):
        received.append(signum)
        for process in processes:
            process.send_signal(signum)

    before = {number: signal.signal(number, relay) for number in stop_signals}
    try:
        codes = [process.wait() for process in processes]
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
    if received:
        return 128 + received[0]
    return next((code for code in codes if code != 0), 0)


def retrain_best(plan: SweepPlan, seeds: int) -> dict:
    """The best trial's settings trained on the whole training set once per
    seed (``--out``/best/seed-S; a finished run is reused)."""
    study = open_study(plan)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        raise ConfigError(f"study {plan.study!r} has no finished trial to retrain (pruned and failed ones only)")
    best = max(complete, key=lambda t: t.value)
    settings = plan.space.fixed | best.params
    runs = []
    for seed in range(plan.base.seed, plan.base.seed + seeds):
        out = plan.out / "best" / f"seed-{seed}"
        stored = out / "summary.json"
        if stored.is_file() and json.loads(stored.read_text()).get("completed"):
            summary = json.loads(stored.read_text())
        else:
            print(f"retraining trial {best.number}'s settings on the whole training set, seed {seed}", flush=True)
            config = plan.base.update(settings | {"val_size": 0, "seed": seed, "progress": False})
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.txt", "a", buffering=1) as log, contextlib.redirect_stdout(log):
                summary = Trainer(config, out, resume=(out / CHECKPOINTS["last"]).is_file()).run()
        runs.append({"seed": seed, "test_accuracy": summary.get("test_accuracy"),
                     "test_loss": summary.get("test_loss"), "seconds": summary["seconds"]})
    accuracies = [r["test_accuracy"] for r in runs if r["test_accuracy"] is not None]
    return {"trial": best.number, "validation": best.value, "settings": settings, "runs": runs,
            "test_accuracy_mean": statistics.fmean(accuracies) if accuracies else None,
            "test_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0 if accuracies else None}


def write_report(plan: SweepPlan, retrained: dict | None) -> Path:
    """``--out``/sweep.json (every trial, the best, its retrained runs) and
    Optuna's plots as PNG: the optimisation history, the validation score
    per epoch of every trial (the pruned ones stop early) and, with two or
    more finished trials, the parameters' importances."""
    study = open_study(plan)
    trials = [{"number": t.number, "state": t.state.name, "params": t.params, "value": t.value,
               "epochs": len(t.intermediate_values), **t.user_attrs}
              for t in study.get_trials(deepcopy=False)]
    report = {"study": plan.study, "storage": plan.storage, **plan.identity(),
              "trials": trials, "finished": _finished(study), "best": retrained}
    path = plan.out / "sweep.json"
    write_text(path, json.dumps(report, indent=2) + "\n")
    _plot(study, plan.out)
    return path


def _plot(study, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    figures = {"history": plots.plot_optimization_history, "epochs": plots.plot_intermediate_values}
    labels = {"history": ("trial", "validation score"), "epochs": ("epoch", "validation score")}
    if len(complete) >= 2 and complete[0].params:
        figures["importances"] = plots.plot_param_importances
    for name, draw in figures.items():
        try:
            with warnings.catch_warnings():  # Optuna's notes on how little a few trials tell
                warnings.simplefilter("ignore")
                axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # too few trials for this view
            print(f"no {name} plot: {_first_line(error)}", file=sys.stderr)
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        if name in labels:
            axes.set_xlabel(labels[name][0])
            axes.set_ylabel(labels[name][1])
        figure.tight_layout()
        figure.savefig(out / f"sweep_{name}.png", dpi=120)
        plt.close(figure)
