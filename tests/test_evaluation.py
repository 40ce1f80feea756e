"""After training: ``best.pt`` beside the last checkpoint, ``targetprop
evaluate`` and ``targetprop predict``, checked against the run's own records
and against a forward pass written out here."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from helpers import quick_config
from targetprop.cli import main
from targetprop.running.checkpoint import load_checkpoint
from targetprop.running.runs import load_run
from targetprop.running.trainer import Trainer

pytest.importorskip("sklearn")  # digits


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation") / "run"
    Trainer(quick_config(rule="dtp", epochs=4, forward_lr=3e-2), out).run()
    return out


def test_best_checkpoint_is_the_epoch_of_the_best_validation_accuracy(run_dir):
    metrics = list(csv.DictReader((run_dir / "metrics.csv").open()))
    best = max(metrics, key=lambda r: float(r["val_acc"]))
    state = load_checkpoint(run_dir / "best.pt")
    assert state["epoch"] - 1 == int(best["epoch"]) and state["best"]["score"] == float(best["val_acc"])
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 5


def test_evaluate_gives_the_runs_own_test_scores(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--checkpoint", "last"]) == 0
    written = json.loads((run_dir / "evaluation-last.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert written["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-12)
    assert written["loss"] == pytest.approx(summary["test_loss"], rel=1e-6)
    assert f"accuracy {summary['test_accuracy']:.4f}" in capsys.readouterr().out


def test_evaluate_defaults_to_the_best_checkpoint(run_dir):
    assert main(["evaluate", str(run_dir)]) == 0
    written = json.loads((run_dir / "evaluation-best.json").read_text())
    best_epoch = load_checkpoint(run_dir / "best.pt")["epoch"] - 1
    assert written["checkpoint"] == "best" and written["epoch"] == best_epoch


def test_a_file_of_the_test_examples_scores_as_the_test_split(run_dir, tmp_path):
    """The examples written back in their loaded scale are standardised as
    the run's were: the same accuracy as the run's own test split."""
    run = load_run(run_dir)
    x, y = run.splits.test.tensors
    np.savez(tmp_path / "test.npz", x=run.info.to_unit_range(x).numpy(), y=y.numpy())
    out = tmp_path / "e.json"
    assert main(["evaluate", str(run_dir), "--checkpoint", "last", "--data", str(tmp_path / "test.npz"),
                 "--out", str(out)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads(out.read_text())["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-12)


def test_predict_writes_the_softmax_of_the_read_out_and_its_argmax(run_dir, tmp_path):
    run = load_run(run_dir, checkpoint="best")
    x, y = run.splits.test.tensors
    np.savez(tmp_path / "new.npz", x=run.info.to_unit_range(x[:20]).numpy())
    assert main(["predict", str(run_dir), "--data", str(tmp_path / "new.npz"), "--out", str(tmp_path / "p.npz")]) == 0
    predictions = np.load(tmp_path / "p.npz")
    with torch.no_grad():
        expected = torch.softmax(run.net(x[:20]).double(), -1)
    np.testing.assert_allclose(predictions["probabilities"], expected.numpy(), rtol=1e-5, atol=1e-6)
    assert predictions["classes"].tolist() == expected.argmax(-1).tolist()


def test_evaluate_and_predict_refuse_what_they_cannot_read(run_dir, tmp_path, capsys):
    np.savez(tmp_path / "narrow.npz", x=np.zeros((5, 3), np.float32), y=np.zeros(5, int))
    np.savez(tmp_path / "unlabelled.npz", x=np.zeros((5, 64), np.float32))
    np.savez(tmp_path / "class12.npz", x=np.zeros((5, 64), np.float32), y=np.full(5, 12))
    for argv, message in [
        (["evaluate", str(run_dir), "--data", str(tmp_path / "narrow.npz")], "examples of shape (3,)"),
        (["evaluate", str(run_dir), "--data", str(tmp_path / "unlabelled.npz")], "no labels 'y'"),
        (["evaluate", str(run_dir), "--data", str(tmp_path / "class12.npz")], "label 12 is not one of the run's 10"),
        (["predict", str(run_dir), "--data", str(tmp_path / "unlabelled.npz"), "--out", str(tmp_path / "p.csv")],
         "written as a .npz file"),
        (["evaluate", str(tmp_path)], "is not a run directory"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_run_without_a_validation_split_has_no_best_checkpoint(tmp_path, capsys):
    Trainer(quick_config(epochs=1, val_size=0), tmp_path / "run").run()
    assert not (tmp_path / "run" / "best.pt").exists()
    assert main(["evaluate", str(tmp_path / "run"), "--checkpoint", "best"]) == 2
    assert "holds no best.pt" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "run")]) == 0  # the default falls back to the last
