"""Data-parallel training (torch.distributed, gloo, 2 processes started by
``targetprop train --nproc 2``): the same steps as one process on the whole
batch, and checkpoints that resume with another number of processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from targetprop.cli import _without_nproc, main

pytest.importorskip("sklearn")  # digits
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="no gloo")]

# 1 024 training examples: 8 global batches of 128, two equal shards of 64 each
COMMON = ["train", "--data", "digits", "--epochs", "1", "--no-progress", "--set", "limit=1024",
          "--set", "threads=1"]


def weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["learner"]["net"]


def test_two_processes_take_the_steps_of_one(tmp_path):
    """bp: each process's gradient of its shard's mean loss, averaged, is the
    gradient of the global batch's mean: the weights after an epoch agree
    with a single process's to float32 rounding."""
    assert main([*COMMON, "--rule", "bp", "--out", str(tmp_path / "one")]) == 0
    assert main([*COMMON, "--rule", "bp", "--nproc", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5)
    summaries = [json.loads((tmp_path / r / "summary.json").read_text()) for r in ("one", "two")]
    assert summaries[0]["train_accuracy"] == summaries[1]["train_accuracy"]  # summed over both processes


def test_a_run_resumes_with_another_number_of_processes(tmp_path):
    out = str(tmp_path / "run")
    assert main([*COMMON, "--rule", "dtp", "--nproc", "2", "--out", out]) == 0
    assert main(["train", "--resume", "--epochs", "2", "--no-progress", "--out", out]) == 0
    assert main(["train", "--resume", "--epochs", "3", "--nproc", "2", "--no-progress", "--out", out]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["completed"] and summary["epochs"] == 3 and summary["test_accuracy"] > 0.5


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


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs /proc to find the worker")
def test_a_worker_that_dies_ends_the_run_with_its_checkpoint_intact(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "targetprop.cli", "train", "--data", "digits", "--rule", "dtp", "--epochs",
               "200", "--no-progress", "--set", "batch_size=8", "--set", "threads=1", "--nproc", "2",
               "--out", str(out)]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        worker = _worker_of_rank(launcher.pid, 1)
        assert worker is not None, "no worker of rank 1 found"
        os.kill(worker, signal.SIGKILL)  # mid-epoch, with at least one epoch's checkpoint written
        _, stderr = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode != 0
    assert "a worker process failed" in stderr and "--resume" in stderr
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] >= 2  # the end of epoch 1 or later, loadable
    assert main(["train", "--resume", "--epochs", str(state["epoch"]), "--no-progress", "--out", str(out)]) == 0


def test_bad_settings_stop_before_processes_start(tmp_path, capsys):
    assert main([*COMMON, "--nproc", "2", "--set", "colour=red", "--out", str(tmp_path / "r")]) == 2
    assert "colour" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_nproc_is_taken_out_of_the_workers_command():
    assert _without_nproc(["train", "--nproc", "2", "--out", "r"]) == ["train", "--out", "r"]
    assert _without_nproc(["train", "--nproc=4", "--epochs", "3"]) == ["train", "--epochs", "3"]
