"""A training run: data, network, rule and optimizers from a :class:`Config`;
epochs with a progress bar, per-epoch metrics and diagnostics; atomic
checkpoints, exact resume, a NaN guard, and a clean stop with a checkpoint
on Ctrl-C, SIGTERM (and any signal in ``stop_signals``).

Files in the run directory:

* ``config.yaml``   the resolved settings;
* ``metrics.csv``   one row per epoch;
* ``summary.json``  rule, data, epochs, the last epoch's scores, seconds;
* ``checkpoint.pt`` everything needed to continue exactly where the run stopped;
* ``best.pt``       the same, as it was after the epoch of the best validation score;
* ``run.lock``      held by the run while it lives (:mod:`.rundir`);
* ``events.out.tfevents.*`` with ``log=tensorboard``: the rows of ``metrics.csv`` for TensorBoard.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
import warnings
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from ..core.architectures import parse_architecture, source_digest
from ..core.rule import Rule
from ..registry import make_rule
from . import distributed
from .augment import augment_batch
from .checkpoint import (CHECKPOINTS, CheckpointError, copy_checkpoint, load_checkpoint, remove_partial_writes,
                         save_checkpoint, write_text)
from .config import GIVEN, Config, ConfigError
from .data import DataSplits, RunData, run_data
from .guard import DivergenceGuard, TrainingDiverged
from .metrics import Totals, early_stop, epoch_line, evaluate, summarize, validation_score, write_metrics
from .rundir import HELD_BY_LAUNCHER, RunDirectoryError, RunLock, check_out_dir
from .tensorboard import EpochLog
from .setup import build_parts, keep_labelled, load_splits, resolve_device, signal_numbers, validate_config

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "train"]  # TrainingDiverged: from .guard

# Settings a resumed run may change: they do not alter what is computed.
RESUMABLE_CHANGES = ("epochs", "progress", "threads", "device", "stop_signals", "log")


class TrainingInterrupted(RuntimeError):
    """The run was stopped (a signal, or ``stop_requested``) after saving a checkpoint;
    ``signal``: the number of the signal that stopped it (None when code asked)."""

    def __init__(self, message: str, signal_number: int | None = None):
        super().__init__(message)
        self.signal = signal_number


@contextlib.contextmanager
def _stop_on_signals(trainer: "Trainer") -> Iterator[None]:
    """Turn each of ``config.stop_signals`` into a stop request honoured
    between two steps, so the checkpoint holds a consistent state. A second
    Ctrl-C stops at once; a repeated TERM or USR1 is the same request (a
    launcher such as torchrun relays the one a scheduler sent)."""

    def handler(signum, frame):
        if signum == signal.SIGINT and trainer.stop_signal == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_signal = trainer.stop_signal or signum
        trainer.stop_requested = True

    previous = {}
    try:
        for number in signal_numbers(trainer.config.stop_signals):
            previous[number] = signal.signal(number, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for number, handler_before in previous.items():
            signal.signal(number, handler_before)


class Trainer:
    """Owns one run directory, held (``run.lock``) from construction until
    :meth:`run` returns. ``callback(trainer)`` is called after every
    step; setting ``trainer.stop_requested`` stops the run like Ctrl-C.
    ``on_epoch(trainer, row)`` is called after every epoch's scores are
    written and its checkpoint saved (an exception it raises ends the run).
    ``net``: the network to train (an ``nn.Sequential`` is wrapped into
    blocks) instead of one built from ``config.arch``; ``splits``: the data,
    instead of loading ``config.data``; ``data``: a user's own loaders
    (:func:`data.loader_data`) instead of either."""

    def __init__(self, config: Config, out_dir: str | Path, *, resume: bool = False,
                 callback: Callable[["Trainer"], None] | None = None, splits: DataSplits | None = None,
                 net: nn.Module | None = None, data: RunData | None = None,
                 on_epoch: Callable[["Trainer", dict], None] | None = None):
        if net is not None and not config.arch.startswith(GIVEN):
            config = config.update({"arch": f"{GIVEN}{type(net).__name__}"})
        if data is not None:
            config = config.update({"data": data.info.name})
        config = validate_config(config)
        self.out_dir = check_out_dir(out_dir)
        self.checkpoint_path = self.out_dir / CHECKPOINTS["last"]
        self.config, self.callback, self.on_epoch = config, callback, on_epoch
        self.stop_requested, self.stop_signal = False, None
        self._join_processes()
        self._lock = self._hold_run_dir()
        try:
            self._start(resume, splits, net, data)
        except BaseException:
            self._release(remove_if_new=True)
            raise

    def _start(self, resume: bool, splits: DataSplits | None, net: nn.Module | None, data: RunData | None) -> None:
        config = self.config
        state = None
        if resume:
            state = load_checkpoint(self.checkpoint_path)
        elif self.checkpoint_path.exists():
            raise FileExistsError(f"{self.out_dir} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
        if self.is_main:
            remove_partial_writes(self.out_dir)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.set_flush_denormal(config.flush_denormal)

        torch.manual_seed(config.seed)
        self.rule: Rule = make_rule(config.rule, **config.rule_settings)
        self.data_note, self.splits = None, splits
        if data is None:
            self.splits = splits = splits or load_splits(config, self.rule)
            if config.labels is not None:
                self.data_note = keep_labelled(splits, config, self.rule)
            data = run_data(splits, config.batch_size, config.probe_size, seed=config.seed,
                            labelled_per_batch=config.labelled_per_batch, group=self.group)
        self.data = data
        self.loaders, self.shuffle_generator = data.loaders, data.shuffle_generator
        parts = build_parts(config, self.rule, data.info, data.targets_per_step, self.device, net)
        self.net, self.learner, self.schedulers = parts.net, parts.learner, parts.schedulers
        if self.group is not None:  # the same weights everywhere (one seed), then noise of its own
            self.learner.synchronize = self.group.average_gradients
            self.group.seed_noise(config.seed)
        self.probe = tuple(t.to(self.device) for t in data.probe)
        self.network_state = self._network_state()  # the file's digest as the network was built from it

        # position: epochs 1-P..0 are feedback pre-training, 1..E training
        self.epoch = 1 - (config.feedback_pretrain_epochs if self.learner.feedback_optimizer else 0)
        self.pass_index, self.batch_index = 0, 0
        self.pass_generator_state = self._shuffle_state()
        self.totals = Totals()
        self.guard = DivergenceGuard(config.divergence_factor)
        self.rows: list[dict] = []
        self.seconds = 0.0
        self.diverged: str | None = None
        self.best: dict | None = None  # the epoch and score of best.pt
        self.epoch_log = (EpochLog(self.out_dir, self.data.info) if config.log == "tensorboard" and self.is_main
                          else None)
        if state is not None:
            self._restore(state)

    def _join_processes(self) -> None:
        """The device, and the group of data-parallel processes when torchrun started this one."""
        self.device = resolve_device(self.config.device)
        self.group = distributed.join(self.device.type)
        self.is_main = self.group is None or self.group.is_main
        if self.group is not None:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            if self.config.batch_size < self.group.size:
                raise ConfigError(f"batch_size {self.config.batch_size} is the global batch: it needs at least "
                                  f"one example for each of the {self.group.size} processes")

    def _hold_run_dir(self) -> RunLock | None:
        """The exclusive hold of the run directory, taken by the main process
        (unless the launcher of the processes holds it); every process raises
        when it cannot be had."""
        lock, problem = None, None
        if self.is_main and os.environ.get(HELD_BY_LAUNCHER) != str(self.out_dir.resolve()):
            try:
                lock = RunLock(self.out_dir)
            except RunDirectoryError as error:
                problem = error
        if self.group is not None and self.group.any(problem is not None, self.device):
            self.group.leave()
            raise problem or RunDirectoryError(f"process 0 of this run could not take --out {self.out_dir}")
        if problem is not None:
            raise problem
        return lock

    def _release(self, remove_if_new: bool = False) -> None:
        if self._lock is not None:
            self._lock.release(remove_if_new=remove_if_new)

    # -- state ---------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "learner": self.learner.state_dict(),
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items() if s is not None},
            "epoch": self.epoch, "pass_index": self.pass_index, "batch_index": self.batch_index,
            "pass_generator_state": self.pass_generator_state,
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "process_rng_states": self._process_rng_states(),
            "totals": self._global_totals().state_dict(), "guard": self.guard.state_dict(),
            "rows": self.rows, "seconds": self.seconds,
            "network": self.network_state, "data": self.data.info.state_dict(), "best": self.best,
        }

    def _process_rng_states(self) -> dict | None:
        """Every process's random state (each draws noise of its own), where there are several."""
        if self.group is None:
            return None
        states = {"cpu": self.group.gather(torch.get_rng_state(), self.device)}
        if self.device.type == "cuda":
            states["cuda"] = self.group.gather(torch.cuda.get_rng_state(self.device), self.device)
        return states

    def _restore_process_rng(self, states: dict | None) -> None:
        """This process's random state as saved, when the run resumes on as many
        processes; else a fresh stream of its own (rank 0 keeps the saved one)."""
        if states is None or len(states["cpu"]) != self.group.size:
            self.group.seed_noise(self.config.seed + 7919 * self.epoch + self.batch_index)
            return
        torch.set_rng_state(states["cpu"][self.group.rank])
        if "cuda" in states and self.device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"][self.group.rank], self.device)

    def _shuffle_state(self) -> torch.Tensor | None:
        return None if self.shuffle_generator is None else self.shuffle_generator.get_state()

    def _network_state(self) -> dict:
        """What rebuilds the network with the config, without the data: the
        examples' shape, the read-out's width, whether it reads every state,
        and the digest of the user's architecture file, where there is one."""
        state = {"input_shape": list(self.data.info.input_shape), "num_outputs": self.data.info.num_outputs,
                 "every_state": self.data.targets_per_step}
        if not self.config.arch.startswith(GIVEN) and parse_architecture(self.config.arch).name == "file":
            state["source_sha256"] = source_digest(parse_architecture(self.config.arch).arguments["path"])
        return state

    def _restore(self, state: dict) -> None:
        saved = {k: v for k, v in state.get("config", {}).items() if k not in RESUMABLE_CHANGES}
        mine = {k: v for k, v in self.config.to_dict().items() if k in saved}
        if saved != mine:
            changed = sorted(k for k in saved if saved[k] != mine.get(k))
            raise CheckpointError(f"checkpoint in {self.out_dir} was made with other settings "
                                  f"({', '.join(changed)}); only {', '.join(RESUMABLE_CHANGES)} "
                                  "may change on resume")
        saved_digest = state.get("network", {}).get("source_sha256")
        if saved_digest is not None and saved_digest != self.network_state.get("source_sha256"):
            warnings.warn(f"{self.config.arch}: the architecture file changed since the checkpoint in "
                          f"{self.out_dir} was made; resuming with the weights of the old one", stacklevel=2)
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
        if self.group is not None:
            self._restore_process_rng(state.get("process_rng_states"))
        if self.is_main:  # the saved sums are every process's: counted once
            self.totals.load_state_dict(state["totals"], self.device)
        self.guard.load_state_dict(state["guard"])
        self.rows, self.seconds = state["rows"], state["seconds"]
        self.best = state.get("best")

    def save(self) -> None:
        """The checkpoint (``checkpoint.pt``) and, after an epoch whose
        validation score is the best so far, its copy ``best.pt``."""
        state = self.state_dict()  # in every process: the totals are summed over them
        if not self.is_main:
            return
        save_checkpoint(state, self.checkpoint_path)
        if self.best is not None and self.best["epoch"] == self.epoch - 1 and self.batch_index == 0:
            copy_checkpoint(self.checkpoint_path, self.out_dir / CHECKPOINTS["best"])

    def _global_totals(self) -> Totals:
        """The running sums of every process (this one's alone in a single process)."""
        if self.group is None or not self.totals.sums:
            return self.totals
        names = list(self.totals.sums)  # the same names, in the same order, in every process
        sums = self.group.sum(torch.stack([self.totals.sums[n].double() for n in names]))
        counts = self.group.sum(torch.stack([torch.as_tensor(self.totals.counts[n], device=sums.device)
                                             .double() for n in names]))
        total = Totals()
        total.sums, total.counts = dict(zip(names, sums)), dict(zip(names, counts))
        return total

    def _stopping(self) -> bool:
        """Whether to stop now: processes stop together, at the first batch
        after any of them was asked to (a scheduler's grace period is short)."""
        if self.group is None:
            return self.stop_requested
        return self.group.any(self.stop_requested, self.device)

    # -- the loop ------------------------------------------------------------

    def _passes(self) -> list[str]:
        if self.epoch <= 0:
            return ["feedback"]
        if self.config.feedback_schedule == "alternating" and self.learner.feedback_optimizer:
            return ["feedback", "forward"]
        return ["train"]

    def run(self) -> dict:
        """Train until ``config.epochs``; returns the summary."""
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.out_dir / "config.yaml", yaml.safe_dump(self.config.to_dict(), sort_keys=False))
            if self.data_note and not self.rows:  # once, when the run starts
                tqdm.write(self.data_note)
        with _stop_on_signals(self):
            try:
                while self.epoch <= self.config.epochs and self.stopped_early is None:
                    started = time.perf_counter()
                    passes = self._passes()
                    while self.pass_index < len(passes):
                        self._run_pass(passes[self.pass_index], started)
                        self.pass_index += 1
                        self.batch_index = 0
                        self.pass_generator_state = self._shuffle_state()
                    self.seconds += time.perf_counter() - started
                    self._end_epoch(time.perf_counter() - started)
            except TrainingDiverged as error:
                self._stop_diverged(error)
            finally:
                if self.group is not None:
                    self.group.leave()
                if self.epoch_log is not None:
                    self.epoch_log.close()
                self._release()
        return self.summary()

    def _stop_diverged(self, error: TrainingDiverged) -> None:
        """Record the divergence in summary.json, keep the last good
        checkpoint (the end of the last finished epoch) and stop."""
        self.diverged = f"{error} (rule {self.config.rule})"
        if self.is_main:
            write_metrics(self.rows, self.out_dir, self.summary())
        kept = (f"the checkpoint of epoch {self.rows[-1]['epoch']} is kept in {self.out_dir}" if self.rows
                else f"no epoch finished, so {self.out_dir} holds no checkpoint")
        raise TrainingDiverged(f"{self.diverged}; {kept}, and summary.json records the divergence") from None

    def _run_pass(self, kind: str, started: float) -> None:
        if self.shuffle_generator is not None:
            self.shuffle_generator.set_state(self.pass_generator_state)
        loader = self.loaders["train"]
        batches = islice(loader, self.batch_index, None)
        label = (f"pretrain {self.epoch + self.config.feedback_pretrain_epochs}" if self.epoch <= 0
                 else f"epoch {self.epoch}/{self.config.epochs}")
        # disable=None: a live bar on a terminal, none in logs and pipes
        bar = tqdm(batches, total=len(loader), initial=self.batch_index, leave=False,
                   desc=f"{label} {kind}", disable=None if self.config.progress and self.is_main else True,
                   dynamic_ncols=True)
        for x, y in bar:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            self._step(kind, augment_batch(x, self.data.info.image_shape, self.config.augment), y)
            self.batch_index += 1
            synced = self.batch_index % 25 == 0 or self.batch_index == len(loader)
            if synced:
                means = self._global_totals().means()
                self.guard.check_losses(means, f"epoch {self.epoch}, batch {self.batch_index}")
                bar.set_postfix({name: f"{value:.4f}" for name, value in means.items()}, refresh=False)
            if self.callback is not None:
                self.callback(self)
            if self._stopping():
                self.seconds += time.perf_counter() - started
                self.save()
                bar.close()
                by = f" by {signal.Signals(self.stop_signal).name}" if self.stop_signal else ""
                raise TrainingInterrupted(
                    f"stopped{by} at epoch {max(self.epoch, 0)}, batch {self.batch_index}; checkpoint saved "
                    f"in {self.out_dir} (continue with: targetprop train --resume --out {self.out_dir})",
                    self.stop_signal)
        bar.close()

    def _step(self, kind: str, x: torch.Tensor, y: torch.Tensor) -> None:
        one = torch.ones((), dtype=torch.int64, device=x.device)
        if kind == "feedback":
            loss = self.learner.feedback_step(x)
            if loss is not None:
                self.totals.add({"feedback_loss": (loss.double(), one)})
            return
        result = (self.learner.train_step(x, y) if kind == "train"
                  else self.learner.forward_step(x, y))
        self.totals.add(result.scores)
        if result.feedback_loss is not None:
            self.totals.add({"feedback_loss": (result.feedback_loss.double(), one)})

    def _end_epoch(self, epoch_seconds: float) -> None:
        means = self._global_totals().means()
        self.guard.check_losses(means, f"the end of epoch {self.epoch}")
        row: dict = {"epoch": self.epoch}
        if self.epoch > 0:
            row |= {f"train_{k}": v for k, v in means.items() if k != "feedback_loss"}
        row["feedback_loss"] = means.get("feedback_loss", math.nan)
        self.net.eval()
        for split in ("val", "test"):
            row |= {f"{split}_{k}": v for k, v in
                    evaluate(self.rule, self.net, self.loaders[split], self.device).items()}
        row |= self.rule.diagnostics(self.net, *self.probe)
        if self.epoch_log is not None and self.epoch_log.shows_images:
            with torch.no_grad():
                self.epoch_log.write_images(self.rule.epoch_images(self.net, self.probe[0]), self.epoch)
        self.net.train()
        self.guard.check_finite({k: v for k, v in row.items() if k != "feedback_loss"},
                                f"the end of epoch {self.epoch} (evaluation and diagnostics)")
        row["forward_lr"] = self.learner.forward_optimizer.param_groups[0]["lr"]
        row["epoch_seconds"], row["seconds"] = epoch_seconds, self.seconds
        self.rows.append(row)
        score = validation_score(row) if self.epoch > 0 else None
        if score is not None and (self.best is None or score > self.best["score"]):
            self.best = {"epoch": self.epoch, "score": score}
        if self.epoch > 0:
            for scheduler in self.schedulers.values():
                if scheduler is not None:
                    scheduler.step()
        self.epoch += 1
        self.pass_index = self.batch_index = 0
        self.totals = Totals()
        self.save()
        if self.is_main:
            write_metrics(self.rows, self.out_dir, self.summary())
            if self.epoch_log is not None:
                self.epoch_log.write(row)
            tqdm.write(epoch_line(row, self.config.epochs))
        if self.on_epoch is not None:
            self.on_epoch(self, row)

    def summary(self) -> dict:
        return {"rule": self.config.rule, "data": self.config.data, "arch": self.config.arch,
                "epochs_planned": self.config.epochs, **summarize(self.rows),
                "seconds": self.seconds, "device": str(self.device),
                "completed": self.epoch > self.config.epochs or self.stopped_early is not None,
                "stopped_early": self.stopped_early, "diverged": self.diverged}

    @property
    def stopped_early(self) -> str | None:
        """Why the run stopped before its last epoch (``stop_when``, ``stop_patience``), or None."""
        return early_stop(self.rows, self.config.stop_when, self.config.stop_patience)


def train(config: Config, out_dir: str | Path, *, resume: bool = False,
          callback: Callable[[Trainer], None] | None = None) -> dict:
    """Run (or continue) a training run and return its summary."""
    return Trainer(config, out_dir, resume=resume, callback=callback).run()
