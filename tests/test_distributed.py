"""Data-parallel training (torch.distributed, gloo, 2 processes started by
``targetprop train --nproc 2``): the same steps as one process on the whole
batch, and checkpoints that resume with another number of processes."""
from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist

from targetprop.cli import _without, main

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


def test_bad_settings_stop_before_processes_start(tmp_path, capsys):
    assert main([*COMMON, "--nproc", "2", "--set", "colour=red", "--out", str(tmp_path / "r")]) == 2
    assert "colour" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_nproc_is_taken_out_of_the_workers_command():
    assert _without(["train", "--nproc", "2", "--out", "r"], "--nproc") == ["train", "--out", "r"]
    assert _without(["train", "--nproc=4", "--epochs", "3"], "--nproc") == ["train", "--epochs", "3"]
