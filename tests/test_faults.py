"""Faults and bad inputs, met as a researcher on a shared machine meets them:
each is a clear error before any work (exit code 2, a message that names the
flag or file, nothing written and nothing existing lost), or a clean stop
with a checkpoint that resumes exactly. ``CASES`` is the table of bad inputs
(``benchmarks/faults.py`` runs it as real processes for the documentation)."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.distributed as dist

from helpers import assert_same_params
from targetprop.cli import main
from targetprop.running.checkpoint import load_checkpoint
from targetprop.running.config import Config
from targetprop.running.rundir import RunLock
from targetprop.running.trainer import Trainer

pytest.importorskip("sklearn")  # digits

BASE = ["train", "--data", "digits", "--arch", "mlp:32x3"]
TRAIN = [*BASE, "--epochs", "2", "--no-progress", "--set", "threads=1"]
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="no gloo")


# ---------------------------------------------------------------- bad inputs


def _npz(x: np.ndarray, y: np.ndarray, **more) -> Callable[[Path], None]:
    return lambda folder: np.savez(folder / "data.npz", x=x.astype(np.float32), y=y, **more)


def _file(folder: Path) -> None:
    (folder / "a_file").write_text("not a folder\n")


def _not_npz(folder: Path) -> None:
    (folder / "data.npz").write_text("hello\n")


def _trees(text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "data.trees").write_text(text)


TREES = ["train", "--data", "{d}/data.trees", "--arch", "tree:8", "--epochs", "1"]
_X = np.random.default_rng(0).normal(size=(300, 4))
SWEEP = ["sweep", "--rule", "dtp", "--data", "digits", "--arch", "mlp:32x3", "--epochs", "1", "--trials", "1",
         "--space", "{d}/space.yaml", "--out", "{d}/sweep"]


def _space(text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "space.yaml").write_text(text)


def _study_of_bp(folder: Path) -> None:
    """A study in {d}/study.db that searched bp."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(storage=f"sqlite:///{folder / 'study.db'}", study_name="s")
    study.set_user_attr("searches", {"rule": "bp"})
    (folder / "space.yaml").write_text("shared: {forward_lr: {low: 1e-4, high: 1e-2, log: true}}\n")


@dataclass(frozen=True)
class Case:
    """``targetprop ARGV`` (``{d}``: the test's folder, after ``prepare(folder)``)
    ends with exit code 2 and ``message`` in its one-line error."""

    name: str
    argv: list[str]
    message: str
    prepare: Callable[[Path], None] | None = field(default=None, compare=False)


CASES = [
    Case("learning rate NaN", [*TRAIN, "--set", "forward_lr=nan"], "'forward_lr' needs a finite number"),
    Case("negative learning rate", [*TRAIN, "--set", "forward_lr=-1"], "'forward_lr' must be > 0"),
    Case("zero feedback learning rate", [*TRAIN, "--set", "feedback_lr=0"], "'feedback_lr' must be > 0"),
    Case("malformed --set value", [*TRAIN, "--set", "forward_optimizer_args={foo: 1"],
         "--set forward_optimizer_args: '{foo: 1' is not a YAML value"),
    Case("unknown optimizer argument", [*TRAIN, "--set", "forward_optimizer_args={foo: 1}"],
         "'forward_optimizer_args' {'foo': 1}: Adam"),
    Case("bad optimizer argument value", [*TRAIN, "--set", "forward_optimizer_args={betas: [2, 3]}"],
         "Invalid beta parameter"),
    Case("scheduler without its argument", [*TRAIN, "--set", "forward_scheduler=steplr"],
         "'forward_scheduler_args' {}: StepLR"),
    Case("unknown setting", [*TRAIN, "--set", "colour=red"], "unknown setting(s) 'colour'"),
    Case("zero epochs", [*TRAIN, "--epochs", "0"], "'epochs' must be >= 1"),
    Case("negative seed", [*TRAIN, "--seed", "-1"], "'seed' must be >= 0"),
    Case("val_size neither fraction nor count", [*TRAIN, "--set", "val_size=1.5"],
         "'val_size' is a fraction in (0, 1) or a whole count"),
    Case("negative val_size", [*TRAIN, "--set", "val_size=-0.1"], "'val_size' must be >= 0"),
    Case("validation split as large as the data", [*TRAIN, "--set", "val_size=5000"],
         "leaves no training examples"),
    Case("negative divergence_factor", [*TRAIN, "--set", "divergence_factor=-1"],
         "'divergence_factor' must be >= 0"),
    Case("divergence_factor below 1", [*TRAIN, "--set", "divergence_factor=0.5"],
         "'divergence_factor' must be > 1"),
    Case("unknown stop signal", [*TRAIN, "--set", "stop_signals=INT,FOO"], "'FOO' is not a signal"),
    Case("bench: zero batch size", ["bench", "--data", "digits", "--batch-size", "0"], "--batch-size >= 1"),
    Case("empty --out", [*TRAIN, "--out", ""], "--out is empty"),
    Case("--out is a file", [*TRAIN, "--out", "{d}/a_file"], "is a file, not a run directory", _file),
    Case("--out below a file", [*TRAIN, "--out", "{d}/a_file/run"], "which is a file", _file),
    Case("--out where nothing can be written", [*TRAIN, "--out", "/proc/targetprop-run"],
         "cannot create the run directory"),
    Case("three examples", [*TRAIN, "--data", "{d}/data.npz"], "too few examples for its splits: 3 training",
         _npz(_X[:3], np.array([0, 1, 0]))),
    Case("labels with gaps", [*TRAIN, "--data", "{d}/data.npz"], "found 0, 1, 9, none of 2, 3",
         _npz(_X, np.array([0, 1, 9])[np.arange(300) % 3])),
    Case("one class", [*TRAIN, "--data", "{d}/data.npz"], "every label is 0",
         _npz(_X, np.zeros(300, dtype=int))),
    Case("a test class without training examples", [*TRAIN, "--data", "{d}/data.npz"], "none of 2",
         _npz(_X, np.arange(300) % 2, x_test=_X[:10].astype(np.float32), y_test=np.arange(10) % 3)),
    Case("not a .npz file", [*TRAIN, "--data", "{d}/data.npz"], "not a .npz file of numeric arrays", _not_npz),
    Case("imagefolder: on a file", [*TRAIN, "--data", "imagefolder:{d}/a_file"], "is a file", _file),
    Case("missing data file", [*TRAIN, "--data", "{d}/nothing.npz"], "not found"),
    Case("bench: malformed architecture", ["bench", "--data", "digits", "--arch", "mlp:abc"],
         "unknown architecture 'mlp:abc'"),
    Case("bench: zero repeats", ["bench", "--data", "digits", "--repeats", "0"], "--repeats must be >= 1"),
    Case("evaluate: not a run", ["evaluate", "{d}"], "is not a run directory"),
    Case("sweep: unknown setting in the space", SWEEP, "shared.colour is not a setting",
         _space("shared: {colour: {choices: [red, blue]}}")),
    Case("sweep: empty range", SWEEP, "forward_lr is an empty or inverted range",
         _space("shared: {forward_lr: {low: 1e-3, high: 1e-3}}")),
    Case("sweep: inverted range", SWEEP, "forward_lr is an empty or inverted range",
         _space("shared: {forward_lr: {low: 1e-2, high: 1e-3, log: true}}")),
    Case("sweep: range outside the setting's bounds", SWEEP, "'feedback_lr' must be > 0",
         _space("shared: {feedback_lr: {low: 0, high: 1e-3}}")),
    Case("sweep: missing space file", SWEEP, "space.yaml: no such file"),
    Case("sweep: unreachable storage", [*SWEEP, "--storage", "sqlite:////nonexistent/dir/study.db"],
         "cannot open the sweep's storage sqlite:////nonexistent/dir/study.db", _space("shared: {}")),
    Case("sweep: storage of an unknown kind", [*SWEEP, "--storage", "nosuchdb://host/db"],
         "cannot open the sweep's storage nosuchdb://host/db", _space("shared: {}")),
    Case("sweep: a study of another rule", [*SWEEP, "--storage", "sqlite:///{d}/study.db", "--study", "s"],
         "study 's' in sqlite:///", _study_of_bp),
    Case("sweep: no validation split", [*SWEEP, "--set", "val_size=0"], "val_size must be > 0", _space("shared: {}")),
    Case("sweep: zero trials", [*SWEEP, "--trials", "0"], "--trials must be >= 1", _space("shared: {}")),
    Case("trees: unbalanced brackets", TREES, "line 2: unbalanced brackets", _trees("1 (MAX 3 4)\n2 (MIN 3 (MAX 1 2)\n")),
    Case("trees: label outside the classes", TREES, "line 2: label '7' is none of the classes 0 1",
         _trees("# classes: 0 1\n7 (MIN 1 2)\n")),
    Case("trees: empty tree", TREES, "line 1: empty tree", _trees("1 ()\n")),
    Case("trees: more than two children", TREES, "line 1: node 'SUM' has 3 children; the tree cell is binary",
         _trees("1 (SUM 3 4 5)\n")),
    Case("trees: a tree net on images", [*TRAIN, "--arch", "tree:8"], "is a tree net: it reads tree data"),
    Case("trees: trees for a chain", ["train", "--data", "listops", "--arch", "mlp:8"], "needs a tree net"),
    Case("early stopping: malformed", [*TRAIN, "--set", "stop_when=acc>1"], "VAL_METRIC>=VALUE"),
    Case("early stopping: no validation split", [*TRAIN, "--set", "stop_patience=3", "--set", "val_size=0"],
         "set val_size > 0"),
    Case("published form of images", [*TRAIN, "--set", "sequence_form=pascanu2013"],
         "sequence_form=pascanu2013 is a form of a generated sequence task"),
    Case("published form of copy", ["train", "--data", "copy", "--arch", "rnn:8", "--set", "sequence_form=pascanu2013"],
         "copy has only its own"),
    Case("orthogonal start of a chain", [*TRAIN, "--set", "init=orthogonal"], "init=orthogonal starts a recurrent"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_a_clear_error_before_any_work(case: Case, tmp_path, capsys):
    if case.argv[0] == "sweep":
        pytest.importorskip("optuna")
    if case.prepare is not None:
        case.prepare(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.replace("{d}", str(tmp_path)) for a in case.argv]
    if "--out" not in argv and argv[0] == "train":
        argv += ["--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert case.message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main([*TRAIN, "--out", out]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    assert main([*TRAIN, "--rule", "bp", "--out", out]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_a_second_run_on_the_same_directory_is_refused_with_the_holders_id(tmp_path, capsys):
    out = tmp_path / "run"
    held = RunLock(out)  # as a run in progress holds it
    try:
        assert main([*TRAIN, "--rule", "bp", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"is in use by another run (process {os.getpid()} on" in err
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # the other run's directory untouched
        assert main([*TRAIN, "--resume", "--out", str(out)]) == 2  # nor can it be resumed under it
    finally:
        held.release()
    assert main([*TRAIN, "--out", str(out)]) == 0  # free once the holder ends


def test_ctrl_c_during_start_up_leaves_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("targetprop.running.trainer.load_splits", interrupted)
    assert main([*TRAIN, "--out", str(tmp_path / "run")]) == 130
    assert "stopped before training started; nothing was trained" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- full disks


def test_a_full_disk_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    save, saves = torch.save, []

    def fills_up(obj, handle, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # the end of epoch 2: the disk is full
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        save(obj, handle, *args, **kwargs)
    monkeypatch.setattr(torch, "save", fills_up)
    assert main([*TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the last good checkpoint.pt is kept" in err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2  # epoch 1's, whole
    assert not list(out.glob("*.tmp"))
    monkeypatch.setattr(torch, "save", save)
    assert main([*TRAIN, "--resume", "--out", str(out)]) == 0


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_keeps_the_last_good_one(tmp_path):
    """SIGKILL in the middle of writing epoch 2's checkpoint: epoch 1's is
    whole, the half-written file is cleared on resume, and the resumed run
    ends with the weights of an uninterrupted one."""
    out = tmp_path / "run"
    killed_mid_write = (
        "import os, signal, sys, torch\n"
        "from targetprop.cli import main\n"
        "save, calls = torch.save, []\n"
        "def save_then_die(obj, handle, *a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        handle.write(b'half a checkpoint'); handle.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "    save(obj, handle, *a, **k)\n"
        "torch.save = save_then_die\n"
        "sys.exit(main(sys.argv[1:]))\n")
    process = subprocess.run([sys.executable, "-c", killed_mid_write, *TRAIN, "--out", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL
    assert list(out.glob("checkpoint.pt.*.tmp"))  # the half-written file is there
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    assert main([*TRAIN, "--resume", "--out", str(out)]) == 0
    assert not list(out.glob("*.tmp"))
    assert main([*TRAIN, "--out", str(tmp_path / "straight")]) == 0
    assert_same_params(*(load_checkpoint(run / "checkpoint.pt")["learner"]["net"]
                         for run in (out, tmp_path / "straight")))


# ---------------------------------------------------------------- signals


def _signal_at_batch(monkeypatch, signum: int, batch: int = 5) -> None:
    """Send ``signum`` to this process after step ``batch`` of epoch 1 (as a scheduler would, mid-epoch)."""
    step = Trainer._step

    def stepping(self, *args):
        step(self, *args)
        if self.epoch == 1 and self.batch_index == batch - 1:
            os.kill(os.getpid(), signum)
    monkeypatch.setattr(Trainer, "_step", stepping)


@pytest.mark.parametrize("name, extra", [("SIGTERM", []), ("SIGINT", []),
                                         ("SIGUSR1", ["--set", "stop_signals=INT,TERM,USR1"])])
def test_a_stop_signal_saves_mid_epoch_and_resumes_exactly(name, extra, tmp_path, capsys, monkeypatch):
    signum = getattr(signal, name)
    assert main([*TRAIN, *extra, "--out", str(tmp_path / "straight")]) == 0
    with monkeypatch.context() as patched:
        _signal_at_batch(patched, signum)
        assert main([*TRAIN, *extra, "--out", str(tmp_path / "run")]) == 128 + signum
    err = capsys.readouterr().err
    assert f"stopped by {name} at epoch 1, batch 5; checkpoint saved" in err and "--resume" in err
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["batch_index"] == 5
    assert signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL)  # handlers restored
    assert main([*TRAIN, "--resume", "--out", str(tmp_path / "run")]) == 0
    assert_same_params(*(load_checkpoint(tmp_path / run / "checkpoint.pt")["learner"]["net"]
                         for run in ("run", "straight")))


def test_a_second_ctrl_c_stops_at_once_with_the_last_checkpoint_intact(tmp_path, capsys, monkeypatch):
    step = Trainer._step

    def pressed_twice(self, *args):
        step(self, *args)
        if self.epoch == 2 and self.batch_index == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(Trainer, "_step", pressed_twice)
    assert main([*TRAIN, "--out", str(tmp_path / "run")]) == 130
    assert "stopped at once by a second Ctrl-C; the last good checkpoint" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2  # the end of epoch 1


def test_a_signal_not_asked_for_is_left_alone(tmp_path):
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda *a: seen.append(1))
    try:
        trainer = Trainer(Config().update({"data": "digits", "arch": "mlp:16x2", "epochs": 1,
                                                 "progress": False}), tmp_path / "run",
                          callback=lambda t: os.kill(os.getpid(), signal.SIGUSR1) if t.batch_index == 1 else None)
        trainer.run()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert seen == [1] and not trainer.stop_requested  # the run's own handler was never installed for it


# ---------------------------------------------------------------- several processes


def _worker_of_rank(launcher: int, rank: int) -> int | None:
    """The pid of the training worker of ``rank`` below the process ``launcher``."""
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            parents, pid = set(), int(proc.name)
            while pid > 1:  # walk up to init
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.add(pid)
        except (ValueError, OSError):
            continue
        if launcher in parents and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def _launch(out: Path, *extra: str, bare_torchrun: bool = False) -> subprocess.Popen:
    """``targetprop train --nproc 2`` (or the same under bare torchrun) on digits in
    batches of 8 (epochs of ~170 steps), as a process."""
    train = [*BASE, "--epochs", "200", "--no-progress", "--set", "batch_size=8", "--set", "threads=1", *extra,
             "--out", str(out)]
    command = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                "targetprop.cli", *train] if bare_torchrun else
               [sys.executable, "-m", "targetprop.cli", *train, "--nproc", "2"])
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _after_first_epoch(launcher: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.1)


@pytest.mark.slow
@needs_gloo
@pytest.mark.parametrize("name, extra", [("SIGTERM", []), ("SIGINT", []),
                                         ("SIGUSR1", ["--set", "stop_signals=INT,TERM,USR1"])])
def test_two_processes_stop_at_the_same_batch_on_a_signal_and_resume_exactly(name, extra, tmp_path):
    out = tmp_path / "run"
    launcher = _launch(out, *extra)
    try:
        _after_first_epoch(launcher, out)
        launcher.send_signal(getattr(signal, name))
        _, err = launcher.communicate(timeout=180)
    finally:
        launcher.kill()
    assert launcher.returncode == 128 + getattr(signal, name), err
    assert f"stopped by {name} at epoch" in err and "Traceback" not in err, err
    state = load_checkpoint(out / "checkpoint.pt")
    stopped_in, batch = state["epoch"], state["batch_index"]
    assert batch > 0  # mid-epoch: both processes stopped there together, or the run would not have saved
    assert main(["train", "--resume", "--epochs", str(stopped_in), "--nproc", "2", "--no-progress",
                 "--out", str(out)]) == 0
    straight = tmp_path / "straight"
    assert main([*BASE, "--epochs", str(stopped_in), "--no-progress", "--set", "batch_size=8",
                 "--set", "threads=1", "--nproc", "2", *extra, "--out", str(straight)]) == 0
    assert_same_params(*(load_checkpoint(run / "checkpoint.pt")["learner"]["net"] for run in (out, straight)))


@pytest.mark.slow
@needs_gloo
@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs /proc to find the worker")
@pytest.mark.parametrize("bare_torchrun", [False, True], ids=["--nproc", "torchrun"])
def test_a_worker_that_dies_ends_the_run_with_one_line_and_its_checkpoint_intact(bare_torchrun, tmp_path):
    """Under --nproc: the surviving process's line and the launcher's, no
    traceback; under bare torchrun the same line comes first, then torchrun's own report."""
    out = tmp_path / "run"
    launcher = _launch(out, bare_torchrun=bare_torchrun)
    try:
        _after_first_epoch(launcher, out)
        worker = _worker_of_rank(launcher.pid, 1)
        assert worker is not None, "no worker of rank 1 found"
        os.kill(worker, signal.SIGKILL)  # mid-epoch, with at least one epoch's checkpoint written
        _, err = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert "error: process 0: another process of this run is gone" in err and "--resume" in err
    assert "[rank0]" not in err  # no traceback of the surviving process
    if not bare_torchrun:
        assert launcher.returncode == 128 + signal.SIGKILL and "Traceback" not in err, err
        assert "error: a worker process was killed by signal 9" in err
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] >= 2  # the end of epoch 1 or later, loadable
    assert main(["train", "--resume", "--epochs", str(state["epoch"]), "--no-progress", "--out", str(out)]) == 0
