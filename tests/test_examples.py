"""The scripts in examples/ run as a user runs them, at tiny sizes, and
leave what they say they leave: run directories, predictions, PNGs and
their printed tables."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")  # the data's default root (Debian's dataset-fashion-mnist)
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist not installed")


def run_example(name: str, *args) -> str:
    """Run examples/NAME.py as a subprocess; its stdout (the test fails with its stderr if it exits non-zero)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}  # one core, as the other tests leave it
    done = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def finished(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["completed"] and summary["epochs"] == summary["epochs_planned"]
    return summary


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_own_data_trains_evaluates_and_predicts(tmp_path):
    out = run_example("own_data", "--n", 300, "--epochs", 1, "--arch", "mlp:16x2", "--out", tmp_path)
    assert finished(tmp_path / "run")["data"] == str(tmp_path / "spirals.npz")
    for evaluation in (tmp_path / "run" / "evaluation-best.json", tmp_path / "evaluation-new.json"):
        assert 0 <= json.loads(evaluation.read_text())["accuracy"] <= 1
    predictions = np.load(tmp_path / "predictions.npz")
    assert predictions["classes"].shape == (200,) and predictions["probabilities"].shape == (200, 3)
    np.testing.assert_allclose(predictions["probabilities"].sum(1), 1, atol=1e-5)
    assert re.search(r"predicted 200 new points: \d+\.\d% correct", out)


@pytest.mark.slow
@needs_fashion
def test_semi_supervised_compares_bengio2014_with_dtp_on_the_labels(tmp_path):
    out = run_example("semi_supervised", "--labels", 30, "--limit", 300, "--epochs", 1, "--baseline-epochs", 1,
                      "--width", 32, "--depth", 2, "--out", tmp_path)
    finished(tmp_path / "bengio2014")
    finished(tmp_path / "dtp-labels-only")
    assert "30 labelled and 270 unlabelled" in out  # bengio2014 keeps the unlabelled rest
    assert "rule 'dtp' does not learn from unlabelled ones" in out
    assert re.search(r"bengio2014, labelled \+ unlabelled: +\d+\.\d\d%", out)
    assert re.search(r"dtp, labelled examples alone: +\d+\.\d\d%", out)


@pytest.mark.slow
@needs_fashion
def test_generative_samples_and_completes(tmp_path):
    out = run_example("generative", "--arch", "mlp:32-16", "--epochs", 1, "--limit", 300, "--n", 4,
                      "--out", tmp_path)
    assert finished(tmp_path / "run")["rule"] == "generative"
    assert is_png(tmp_path / "samples.png") and is_png(tmp_path / "completion.png")
    assert re.search(r"completion \d+\.\d{4}, training-mean fill \d+\.\d{4}", out)


@pytest.mark.slow
def test_recurrent_trains_by_bptt_and_by_targets_through_time(tmp_path):
    out = run_example("recurrent", "--data", "temporal-order", "--seq-len", 20, "--arch", "rnn:16",
                      "--epochs", 1, "--limit", 300, "--out", tmp_path)
    for rule in ("bp", "dtp"):
        assert finished(tmp_path / rule)["rule"] == rule
        assert re.search(rf"^{rule} +test accuracy \d+\.\d\d%", out, re.M)


@pytest.mark.slow
@needs_fashion
def test_compare_rules_prints_a_table(tmp_path):
    out = run_example("compare_rules", "--epochs", 1, "--limit", 300, "--width", 16, "--depth", 2,
                      "--out", tmp_path)
    for rule in ("bp", "dtp", "drl", "ldrl"):
        summary = finished(tmp_path / rule)
        assert summary["rule"] == rule
        row = re.search(rf"^{rule} +(\d+\.\d\d)% +(\d+\.\d)$", out, re.M)
        assert row and float(row.group(1)) == pytest.approx(100 * summary["test_accuracy"], abs=0.006)
