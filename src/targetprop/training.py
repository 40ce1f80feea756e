"""A training run: data, network, rule and optimizers from a :class:`Config`;
epochs with a progress bar, per-epoch metrics and diagnostics; atomic
checkpoints, exact resume, a NaN guard and a clean stop on Ctrl-C.

Files in the run directory:

* ``config.yaml``   the resolved settings;
* ``metrics.csv``   one row per epoch;
* ``summary.json``  rule, data, epochs, accuracies, seconds;
* ``checkpoint.pt`` everything needed to continue exactly where the run stopped.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import signal
import time
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import torch
import yaml
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from . import optim
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import Config, ConfigError
from .data import DATASETS, DataSplits, keep_labels, load_dataset, make_loaders
from .diagnostics import layer_diagnostics
from .learner import Learner
from .rules import RULES, make_rule

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "train", "validate_config",
           "resolve_device", "evaluate", "evaluate_reconstruction", "load_splits"]

FEEDBACK_SCHEDULES = ("interleaved", "alternating")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Settings a resumed run may change: they do not alter what is computed.
RESUMABLE_CHANGES = ("epochs", "progress", "threads", "device")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """The run was stopped (Ctrl-C) after saving a checkpoint."""


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {key} {value!r}; choose one of: {', '.join(choices)}")


def validate_config(config: Config) -> None:
    """Check every name and range in ``config`` before any work starts."""
    _check_choice("rule", config.rule, RULES)
    _check_choice("data", config.data, DATASETS)
    _check_choice("feedback_schedule", config.feedback_schedule, FEEDBACK_SCHEDULES)
    _check_choice("dtype", config.dtype, DTYPES)
    try:
        rule = make_rule(config.rule, **config.to_dict())  # the rule checks its own settings
        with torch.device("meta"):  # a network of that shape, never allocated, checks arch against rule
            rule.build_network(config.arch, 2, 2, config.activation, config.dropout, config.layer_hidden)
        for prefix in ("forward", "feedback"):
            optim.check_optimizer(getattr(config, f"{prefix}_optimizer"))
            optim.check_scheduler(getattr(config, f"{prefix}_scheduler"))
        resolve_device(config.device)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for key in ("epochs", "feedback_iterations", "feedback_pretrain_epochs", "threads", "layer_hidden"):
        if getattr(config, key) < 0:
            raise ConfigError(f"setting {key!r} must be >= 0")
    for key in ("batch_size", "probe_size"):
        if getattr(config, key) < 1:
            raise ConfigError(f"setting {key!r} must be >= 1")
    if config.feedback_noise <= 0:
        raise ConfigError("setting 'feedback_noise' must be > 0")
    if not 0 <= config.dropout < 1:
        raise ConfigError("setting 'dropout' must lie in [0, 1)")
    if not 0 <= config.labelled_per_batch < config.batch_size:
        raise ConfigError(f"setting 'labelled_per_batch' must lie in 0..{config.batch_size - 1}")
    if config.labelled_per_batch and (config.labels is None or not config.use_unlabelled):
        raise ConfigError("setting 'labelled_per_batch' mixes labelled and unlabelled examples: "
                          "it needs labels=N with use_unlabelled=true")
    if config.labels is not None and config.use_unlabelled and not rule.handles_unlabelled:
        raise ConfigError(f"rule {config.rule!r} cannot learn from unlabelled examples; "
                          "set use_unlabelled=false to train on the labelled ones alone")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    return device


@torch.no_grad()
def evaluate(net: torch.nn.Module, loader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a loader (nan, nan if it is empty)."""
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = net(x)
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
    if count == 0:
        return math.nan, math.nan
    return loss_sum.item() / count, correct.item() / count


@torch.no_grad()
def evaluate_reconstruction(net: torch.nn.Module, loader, device: torch.device) -> float:
    """Mean squared error per input feature of ``net.reconstruct`` (a
    generative stack's noise-free deep auto-encoder) over a loader."""
    total = torch.zeros((), device=device, dtype=torch.float64)
    count = 0
    for x, _ in loader:
        x = x.to(device)
        total += (net.reconstruct(x) - x).pow(2).sum().double()
        count += x.numel()
    return total.item() / count if count else math.nan


@contextlib.contextmanager
def _deferred_interrupt(trainer: "Trainer") -> Iterator[None]:
    """Turn the first Ctrl-C into a stop request honoured between two steps (so
    the checkpoint holds a consistent state); a second Ctrl-C stops at once."""
    try:
        previous = signal.getsignal(signal.SIGINT)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Trainer:
    """Owns one run directory. ``callback(trainer)`` is called after every
    step; setting ``trainer.stop_requested`` stops the run like Ctrl-C."""

    def __init__(self, config: Config, out_dir: str | Path, *, resume: bool = False,
                 callback: Callable[["Trainer"], None] | None = None, splits: DataSplits | None = None):
        validate_config(config)
        self.out_dir = Path(out_dir)
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        state = None
        if resume:
            state = load_checkpoint(self.checkpoint_path)
        elif self.checkpoint_path.exists():
            raise FileExistsError(f"{self.out_dir} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
        self.config = config
        self.callback = callback
        self.stop_requested = False
        self.device = resolve_device(config.device)
        dtype = DTYPES[config.dtype]
        if config.threads:
            torch.set_num_threads(config.threads)

        torch.manual_seed(config.seed)
        self.rule = make_rule(config.rule, **config.to_dict())
        self.splits = splits or load_splits(config, self.rule)
        if config.labels is not None:
            self._keep_labels(config)
        self.loaders = make_loaders(self.splits, config.batch_size, seed=config.seed,
                                    labelled_per_batch=config.labelled_per_batch)
        self.shuffle_generator = self.loaders["train"].generator
        self.net = self.rule.build_network(config.arch, self.splits.num_features,
                                           self.splits.num_classes, config.activation,
                                           config.dropout, config.layer_hidden).to(self.device, dtype)
        forward_opt = optim.make_optimizer(config.forward_optimizer, self.net.forward_parameters(),
                                           config.forward_lr, **config.forward_optimizer_args)
        feedback_opt = None
        if self.rule.uses_feedback and self.net.feedback_parameters():
            feedback_opt = optim.make_optimizer(config.feedback_optimizer, self.net.feedback_parameters(),
                                                config.feedback_lr, **config.feedback_optimizer_args)
        interleaved = config.feedback_schedule == "interleaved"
        self.learner = Learner(self.net, self.rule, forward_opt, feedback_opt,
                               config.feedback_iterations if interleaved and feedback_opt else 0)
        self.schedulers = {
            "forward": optim.make_scheduler(config.forward_scheduler, forward_opt, config.epochs,
                                            **config.forward_scheduler_args),
            "feedback": (optim.make_scheduler(config.feedback_scheduler, feedback_opt, config.epochs,
                                              **config.feedback_scheduler_args) if feedback_opt else None),
        }
        probe_source = self.splits.val if len(self.splits.val) else self.splits.train
        n = min(config.probe_size, len(probe_source))
        self.probe = tuple(t[:n].to(self.device) for t in probe_source.tensors)

        # position: epochs 1-P..0 are feedback pre-training, 1..E training
        self.epoch = 1 - (config.feedback_pretrain_epochs if feedback_opt else 0)
        self.pass_index, self.batch_index = 0, 0
        self.pass_generator_state = self.shuffle_generator.get_state()
        self.totals = self._zero_totals()
        self.rows: list[dict] = []
        self.seconds = 0.0
        if state is not None:
            self._restore(state)

    def _keep_labels(self, config: Config) -> None:
        """Semi-supervised data: labels for ``config.labels`` training examples,
        the rest unlabelled (y = -1) or, without ``use_unlabelled``, dropped."""
        x, y = self.splits.train.tensors
        try:
            y = keep_labels(y, config.labels, self.splits.num_classes, seed=config.seed)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if not config.use_unlabelled:
            x, y = x[y >= 0], y[y >= 0]
        self.splits.train = TensorDataset(x, y)

    # -- state ---------------------------------------------------------------

    def _zero_totals(self) -> dict[str, torch.Tensor]:
        zero = lambda dtype: torch.zeros((), device=self.device, dtype=dtype)  # noqa: E731
        return {"loss": zero(torch.float64), "correct": zero(torch.int64), "count": zero(torch.int64),
                "feedback_loss": zero(torch.float64), "feedback_count": zero(torch.int64)}

    def state_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "learner": self.learner.state_dict(),
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items() if s is not None},
            "epoch": self.epoch, "pass_index": self.pass_index, "batch_index": self.batch_index,
            "pass_generator_state": self.pass_generator_state,
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "totals": {k: v.cpu() for k, v in self.totals.items()},
            "rows": self.rows, "seconds": self.seconds,
        }

    def _restore(self, state: dict) -> None:
        saved = {k: v for k, v in state.get("config", {}).items() if k not in RESUMABLE_CHANGES}
        mine = {k: v for k, v in self.config.to_dict().items() if k in saved}
        if saved != mine:
            changed = sorted(k for k in saved if saved[k] != mine.get(k))
            raise CheckpointError(f"checkpoint in {self.out_dir} was made with other settings "
                                  f"({', '.join(changed)}); only {', '.join(RESUMABLE_CHANGES)} "
                                  "may change on resume")
        try:
            self.learner.load_state_dict(state["learner"])
            for key, scheduler in self.schedulers.items():
                if scheduler is not None:
                    scheduler.load_state_dict(state["schedulers"][key])
        except (KeyError, RuntimeError, ValueError) as error:
            raise CheckpointError(f"checkpoint in {self.out_dir} does not fit this network: "
                                  f"{str(error).splitlines()[0]}") from None
        self.epoch, self.pass_index = state["epoch"], state["pass_index"]
        self.batch_index = state["batch_index"]
        self.pass_generator_state = state["pass_generator_state"]
        torch.set_rng_state(state["torch_rng_state"])
        if state["cuda_rng_state"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng_state"])
        self.totals = {k: v.to(self.device) for k, v in state["totals"].items()}
        self.rows, self.seconds = state["rows"], state["seconds"]

    def save(self) -> None:
        save_checkpoint(self.state_dict(), self.checkpoint_path)

    # -- the loop ------------------------------------------------------------

    def _passes(self) -> list[str]:
        if self.epoch <= 0:
            return ["feedback"]
        if self.config.feedback_schedule == "alternating" and self.learner.feedback_optimizer:
            return ["feedback", "forward"]
        return ["train"]

    def run(self) -> dict:
        """Train until ``config.epochs``; returns the summary."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.yaml").write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        with _deferred_interrupt(self):
            while self.epoch <= self.config.epochs:
                started = time.perf_counter()
                passes = self._passes()
                while self.pass_index < len(passes):
                    self._run_pass(passes[self.pass_index], started)
                    self.pass_index += 1
                    self.batch_index = 0
                    self.pass_generator_state = self.shuffle_generator.get_state()
                self.seconds += time.perf_counter() - started
                self._end_epoch(time.perf_counter() - started)
        return self.summary()

    def _run_pass(self, kind: str, started: float) -> None:
        self.shuffle_generator.set_state(self.pass_generator_state)
        loader = self.loaders["train"]
        batches = islice(loader, self.batch_index, None)
        label = (f"pretrain {self.epoch + self.config.feedback_pretrain_epochs}" if self.epoch <= 0
                 else f"epoch {self.epoch}/{self.config.epochs}")
        # disable=None: a live bar on a terminal, none in logs and pipes
        bar = tqdm(batches, total=len(loader), initial=self.batch_index, leave=False,
                   desc=f"{label} {kind}", disable=None if self.config.progress else True,
                   dynamic_ncols=True)
        for x, y in bar:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            self._step(kind, x, y)
            self.batch_index += 1
            if self.batch_index % 25 == 0 or self.batch_index == len(loader):
                self._check_finite()
                bar.set_postfix(self._running(), refresh=False)
            if self.callback is not None:
                self.callback(self)
            if self.stop_requested:
                self.seconds += time.perf_counter() - started
                self.save()
                bar.close()
                raise TrainingInterrupted(
                    f"stopped at epoch {max(self.epoch, 0)}, batch {self.batch_index}; checkpoint saved "
                    f"in {self.out_dir} (continue with: targetprop train --resume --out {self.out_dir})")
        bar.close()

    def _step(self, kind: str, x: torch.Tensor, y: torch.Tensor) -> None:
        totals = self.totals
        if kind == "feedback":
            loss = self.learner.feedback_step(x)
            if loss is not None:
                totals["feedback_loss"] += loss.double()
                totals["feedback_count"] += 1
            return
        result = (self.learner.train_step(x, y) if kind == "train"
                  else self.learner.forward_step(x, y))
        if result.logits is None:  # a generative rule: its output loss is over every example
            count = torch.tensor(len(y), device=y.device)
        else:
            labelled = y >= 0  # semi-supervised batches hold unlabelled examples (y = -1)
            count = labelled.sum()
            totals["correct"] += ((result.logits.argmax(1) == y) & labelled).sum()
        totals["loss"] += result.output_loss.double() * count
        totals["count"] += count
        if result.feedback_loss is not None:
            totals["feedback_loss"] += result.feedback_loss.double()
            totals["feedback_count"] += 1

    def _running(self) -> dict[str, str]:
        t = {k: v.item() for k, v in self.totals.items()}
        out = {}
        if t["count"]:
            out["loss"] = f"{t['loss'] / t['count']:.4f}"
            if not self.rule.generative:
                out["acc"] = f"{t['correct'] / t['count']:.4f}"
        if t["feedback_count"]:
            out["fb"] = f"{t['feedback_loss'] / t['feedback_count']:.4f}"
        return out

    def _check_finite(self) -> None:
        if not (torch.isfinite(self.totals["loss"]) and torch.isfinite(self.totals["feedback_loss"])):
            raise TrainingDiverged(
                f"loss became NaN or infinite at epoch {self.epoch}, batch {self.batch_index} "
                f"(rule {self.config.rule}); the last good checkpoint in {self.out_dir} is kept. "
                "Try a smaller learning rate or target_step.")

    def _end_epoch(self, epoch_seconds: float) -> None:
        self._check_finite()
        t = {k: v.item() for k, v in self.totals.items()}
        row: dict = {"epoch": self.epoch}
        if self.epoch > 0:
            row["train_loss"] = t["loss"] / max(t["count"], 1)
            if not self.rule.generative:
                row["train_acc"] = t["correct"] / max(t["count"], 1)
        row["feedback_loss"] = t["feedback_loss"] / t["feedback_count"] if t["feedback_count"] else math.nan
        self.net.eval()
        for split in ("val", "test"):
            if self.rule.supervised:
                row[f"{split}_loss"], row[f"{split}_acc"] = evaluate(self.net, self.loaders[split], self.device)
            if self.rule.generative:
                row[f"{split}_recon"] = evaluate_reconstruction(self.net, self.loaders[split], self.device)
        row |= layer_diagnostics(self.net, self.rule, *self.probe)
        self.net.train()
        row["forward_lr"] = self.learner.forward_optimizer.param_groups[0]["lr"]
        row["epoch_seconds"], row["seconds"] = epoch_seconds, self.seconds
        self.rows.append(row)
        if self.epoch > 0:
            for scheduler in self.schedulers.values():
                if scheduler is not None:
                    scheduler.step()
        self.epoch += 1
        self.pass_index = self.batch_index = 0
        self.totals = self._zero_totals()
        self._write_metrics()
        self.save()
        self._report(row)

    def _report(self, row: dict) -> None:
        if row["epoch"] <= 0:
            text = f"pretrain feedback_loss {row['feedback_loss']:.4f}"
        else:
            text = f"epoch {row['epoch']}/{self.config.epochs}  loss {row['train_loss']:.4f}  "
            if "train_acc" in row:
                text += f"train {row['train_acc']:.4f}  "
            if "val_acc" in row:
                text += f"val {row['val_acc']:.4f}  test {row['test_acc']:.4f}  "
            if "val_recon" in row:
                text += f"val recon {row['val_recon']:.4f}  test recon {row['test_recon']:.4f}  "
            text += f"{row['seconds']:.1f}s"
        tqdm.write(text)

    def _write_metrics(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        path = self.out_dir / "metrics.csv"
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(path)
        summary = self.summary()
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    def summary(self) -> dict:
        trained = [r for r in self.rows if r["epoch"] > 0]
        last = trained[-1] if trained else {}
        best = max(trained, key=lambda r: r["val_acc"] if not math.isnan(r.get("val_acc", math.nan)) else -1,
                   default={})
        return {
            "rule": self.config.rule, "data": self.config.data, "arch": self.config.arch,
            "epochs": len(trained), "epochs_planned": self.config.epochs,
            "test_accuracy": last.get("test_acc"), "val_accuracy": last.get("val_acc"),
            "train_accuracy": last.get("train_acc"),
            "best_val_epoch": best.get("epoch"), "test_accuracy_at_best_val": best.get("test_acc"),
            "test_reconstruction": last.get("test_recon"),
            "seconds": self.seconds, "device": str(self.device),
            "completed": self.epoch > self.config.epochs,
        }


def load_splits(config: Config, rule) -> DataSplits:
    """The run's data: its split, and standardised unless ``standardize`` says
    otherwise (by default generative stacks see features in [0, 1], where
    their samples are images and their Parzen estimates are comparable)."""
    standardize = not rule.generative if config.standardize is None else config.standardize
    val_size = int(config.val_size) if config.val_size >= 1 else config.val_size
    return load_dataset(config.data, val_size=val_size, seed=config.seed, dtype=DTYPES[config.dtype],
                        limit=config.limit, standardize=standardize)


def train(config: Config, out_dir: str | Path, *, resume: bool = False,
          callback: Callable[[Trainer], None] | None = None) -> dict:
    """Run (or continue) a training run and return its summary."""
    return Trainer(config, out_dir, resume=resume, callback=callback).run()
