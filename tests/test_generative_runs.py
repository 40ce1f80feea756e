"""Generative stacks end to end on the 8x8 digits: training runs, resume,
the ``sample`` and ``complete`` commands."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("sklearn")

from test_training import assert_stopping_mid_epoch_then_resuming_is_exact, quick_config, rows  # noqa: E402

from targetprop.cli import main  # noqa: E402
from targetprop.running.data import load_dataset  # noqa: E402
from targetprop.running.runs import load_run  # noqa: E402
from targetprop.running.trainer import Trainer  # noqa: E402

GENERATIVE = dict(rule="generative", arch="mlp:32-16", top_width=16, epochs=2)


def test_digits_in_unit_range_and_back():
    raw = load_dataset("digits", standardize=False)
    assert raw.mean is None and 0 <= raw.train.tensors[0].min() and raw.train.tensors[0].max() <= 1
    standard = load_dataset("digits")
    assert torch.allclose(standard.to_unit_range(standard.train.tensors[0]), raw.train.tensors[0], atol=1e-5)
    assert standard.class_name(3) == "3"


@pytest.mark.parametrize("rule", ["generative", "generative-bp"])
def test_a_generative_run_reports_reconstructions(tmp_path, rule):
    summary = Trainer(quick_config(**GENERATIVE | {"rule": rule}), tmp_path / "run").run()
    assert summary["test_accuracy"] is None and summary["completed"]
    assert 0 < summary["test_reconstruction"] < 1
    last = rows(tmp_path / "run")[-1]
    assert {"val_recon", "test_recon", "x_recon_1", "x_recon_2", "recon_1"} <= set(last)
    assert "val_acc" not in last


@pytest.mark.slow
def test_image_and_label_stack_is_scored_by_label_completion(tmp_path):
    summary = Trainer(quick_config(**GENERATIVE | {"modalities": "image+label", "epochs": 10}),
                      tmp_path / "run").run()
    assert summary["test_accuracy"] > 0.4  # 10 classes; Algorithm 6 learns to fill in the label
    assert summary["test_reconstruction"] is not None


@pytest.mark.parametrize("top", ["dae", "parzen"])
def test_generative_runs_resume_exactly(tmp_path, top):
    config = quick_config(**GENERATIVE | {"top_prior": top})
    assert_stopping_mid_epoch_then_resuming_is_exact(config, tmp_path, stop_at=30)


@pytest.mark.slow
def test_cli_sample_and_chain(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(quick_config(**GENERATIVE), run).run()
    assert main(["sample", str(run), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(run), "--n", "4", "--steps", "5", "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "c.png").stat().st_size > 0
    assert main(["plot", str(run), "--out", str(tmp_path / "plots")]) == 0  # reconstruction curves
    assert (tmp_path / "plots" / "curves.png").is_file()
    assert not (tmp_path / "plots" / "angles.png").exists()  # no back-prop to compare with
    assert main(["complete", str(run), "--hide", "lower", "--out", str(tmp_path / "x.png")]) == 2
    assert "modalities=image can complete: nothing" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_complete_halves_and_labels(tmp_path, capsys):
    halves = tmp_path / "halves"
    Trainer(quick_config(**GENERATIVE | {"modalities": "halves"}), halves).run()
    assert main(["complete", str(halves), "--hide", "lower", "--out", str(tmp_path / "c.png")]) == 0
    assert "training-mean fill" in capsys.readouterr().out
    labelled = tmp_path / "labelled"
    Trainer(quick_config(**GENERATIVE | {"modalities": "image+label"}), labelled).run()
    assert main(["complete", str(labelled), "--hide", "label", "--out", str(tmp_path / "l.png")]) == 0
    assert "by label completion" in capsys.readouterr().out
    assert main(["sample", str(labelled), "--label", "3", "--n", "4", "--out", str(tmp_path / "3.png")]) == 0
    assert main(["sample", str(halves), "--label", "3", "--out", str(tmp_path / "no.png")]) == 2
    assert "need an image+label stack" in capsys.readouterr().err


def test_sampling_a_classifier_run_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(quick_config(rule="dtp", epochs=1), run).run()
    assert main(["sample", str(run), "--out", str(tmp_path / "s.png")]) == 2
    assert "cannot generate" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "nothing")]) == 2


def test_load_run_restores_the_trained_network(tmp_path):
    trainer = Trainer(quick_config(**GENERATIVE), tmp_path / "run")
    trainer.run()
    run = load_run(tmp_path / "run")
    for key, value in trainer.net.state_dict().items():
        assert torch.equal(run.net.state_dict()[key], value), key
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["rule"] == "generative"
