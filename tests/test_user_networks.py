"""A network of the user's own, end to end: ``--arch FILE.py:FUNCTION`` on
the command line (runs, resumes, reopens without its data, times), ``fit``
in Python on a dataset name or on the user's own DataLoaders, the README's
loop on a wrapped model, and every bad input as a clear error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("sklearn")  # the runs train on scikit-learn's digits (8×8 images)

from targetprop import fit, make_rule, wrap  # noqa: E402
from targetprop.cli import main  # noqa: E402
from targetprop.running.runs import load_run  # noqa: E402

import user_models  # noqa: E402

MODELS = Path(user_models.__file__)
QUICK = ["--data", "digits", "--epochs", "3", "--no-progress", "--set", "probe_size=64", "--set", "threads=1",
         "--set", "forward_lr=1e-2"]


def train(tmp_path, rule: str, function: str = "norm_conv", *extra: str, out: str = "run") -> int:
    return main(["train", *QUICK, "--rule", rule, "--arch", f"{MODELS}:{function}", "--out", str(tmp_path / out),
                 *extra])


@pytest.mark.parametrize("rule", ["bp", "dtp", "drl", "ldrl"])
def test_a_file_of_ones_own_trains_from_the_command_line(tmp_path, rule):
    assert train(tmp_path, rule) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.3 and summary["arch"].endswith("user_models.py:norm_conv")
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "angle_3" in header and (rule == "bp" or "recon_3" in header)


def test_it_resumes_and_warns_when_the_file_changed(tmp_path):
    copied = tmp_path / "model.py"
    shutil.copy(MODELS, copied)
    args = ["train", "--data", "digits", "--rule", "dtp", "--arch", f"{copied}:norm_conv", "--no-progress",
            "--set", "probe_size=64", "--out", str(tmp_path / "run")]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--resume"]) == 0  # unchanged: no warning
    copied.write_text(copied.read_text() + "\n# an edit\n")
    with pytest.warns(UserWarning, match="architecture file changed"):
        assert main([*args, "--epochs", "3", "--resume"]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs"] == 3


def test_a_run_reopens_without_its_data(tmp_path, monkeypatch):
    assert train(tmp_path, "dtp") == 0
    import targetprop.running.runs as runs

    def no_data(*args, **kwargs):
        raise AssertionError("the data were loaded")

    monkeypatch.setattr(runs, "load_splits", no_data)
    run = load_run(tmp_path / "run")
    assert run.info.input_shape == (1, 8, 8) and run.info.num_classes == 10
    assert run.net(torch.zeros(2, 1, 8, 8)).shape == (2, 10) and not run.net.training
    assert main(["plot", str(tmp_path / "run")]) == 0


def test_bench_times_a_file_of_ones_own(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--data", "digits", "--rules", "bp,dtp", "--arch", f"{MODELS}:norm_conv",
                 "--repeats", "5", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"bp", "dtp"} and result["dtp"]["ratio_to_bp"] > 0


def test_time_rules_takes_a_network_object_and_gives_each_rule_its_own_copy():
    from targetprop.running.bench import time_rules

    model = user_models.norm_conv((1, 8, 8), 3)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    result = time_rules(["bp", "ldrl"], x, y, net=model, num_classes=3, repeats=2, warmup=1, rounds=1)
    assert set(result) == {"bp", "ldrl"} and result["ldrl"]["ratio_to_bp"] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # timed on copies


@pytest.mark.parametrize("arch, message", [
    ("missing.py:f", "no file"),
    (f"{MODELS}:no_such_function", "has no function 'no_such_function'; it defines .*norm_conv"),
    (f"{MODELS}:not_a_module", "returned str, not an nn.Module"),
])
def test_bad_files_are_clear_errors(tmp_path, capsys, arch, message):
    assert main(["train", *QUICK, "--arch", arch, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    import re
    assert re.search(message, err), err


def test_an_error_in_the_users_code_shows_their_traceback_not_ours(tmp_path, capsys):
    assert train(tmp_path, "dtp", "fails") == 2
    err = capsys.readouterr().err
    assert "user_models.py" in err and "helper_that_fails" in err and "the user's own bug for (1, 8, 8)" in err
    assert "targetprop/" not in err.replace(str(MODELS), "")  # no frame of ours


def test_a_model_that_does_not_fit_the_data_is_a_clear_error(tmp_path, capsys):
    assert train(tmp_path, "dtp", "eight_features") == 2  # Linear(8, ·) on 8×8 images
    assert "does not take inputs of shape (1, 8, 8)" in capsys.readouterr().err


def test_bengio2014_trains_a_fully_connected_model_of_ones_own_and_says_why_not_a_conv_net(tmp_path, capsys):
    assert train(tmp_path, "bengio2014", "norm_mlp", "--epochs", "10") == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["test_accuracy"] > 0.5
    assert train(tmp_path, "bengio2014", "norm_conv", out="conv") == 2
    assert "read vectors, but block 1 of this model gives (4, 4, 4)" in capsys.readouterr().err


def test_fit_takes_a_fully_connected_model_to_bengio2014_under_its_conditional_top(tmp_path):
    torch.manual_seed(0)
    model = user_models.norm_mlp((1, 8, 8), 10)
    summary = fit(model, "digits", rule="bengio2014", epochs=10, out=tmp_path / "run", forward_lr=1e-2)
    assert summary["test_accuracy"] > 0.5
    run = load_run(tmp_path / "run", net=user_models.norm_mlp((1, 8, 8), 10))
    assert type(run.net).__name__ == "ConditionalNetwork" and run.net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_fit_trains_the_model_itself_on_a_dataset(tmp_path):
    torch.manual_seed(0)
    model = user_models.norm_conv((1, 8, 8), 10)
    before = [p.detach().clone() for p in model.parameters()]
    summary = fit(model, "digits", rule="dtp", epochs=3, out=tmp_path / "run", forward_lr=1e-2, probe_size=64)
    assert summary["test_accuracy"] > 0.5 and summary["epochs"] == 3
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["test_accuracy"] == summary["test_accuracy"]
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    run = load_run(tmp_path / "run", net=user_models.norm_conv((1, 8, 8), 10))  # reopened with the same model
    assert run.net(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    with pytest.raises(ValueError, match="net=the same model"):
        load_run(tmp_path / "run")


def digits_loaders(batch_size: int = 64):
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    parts = [(x[:1200], y[:1200]), (x[1200:1500], y[1200:1500]), (x[1500:], y[1500:])]
    generator = torch.Generator().manual_seed(0)
    return [DataLoader(TensorDataset(*parts[0]), batch_size, shuffle=True, generator=generator),
            *(DataLoader(TensorDataset(*part), 256) for part in parts[1:])]


def test_fit_takes_the_users_own_loaders(tmp_path):
    torch.manual_seed(0)
    train_loader, val_loader, test_loader = digits_loaders()
    summary = fit(user_models.norm_conv((1, 8, 8), 10), (train_loader, val_loader, test_loader), rule="ldrl",
                  epochs=3, out=tmp_path / "run", forward_lr=1e-2)
    assert summary["test_accuracy"] > 0.5 and summary["data"] == "given:DataLoader"
    without_test = fit(user_models.norm_conv((1, 8, 8), 10), (train_loader, val_loader), rule="bp", epochs=2,
                       out=tmp_path / "no_test", forward_lr=1e-2)
    assert without_test["val_accuracy"] > 0.3 and without_test.get("test_accuracy") is None


def test_fit_refuses_what_the_loaders_decide_and_models_that_do_not_fit_them(tmp_path):
    loaders = digits_loaders()[:2]
    with pytest.raises(ValueError, match="'batch_size' belongs to datasets targetprop loads"):
        fit(user_models.norm_conv((1, 8, 8), 10), loaders, out=tmp_path / "r", batch_size=32)
    with pytest.raises(ValueError, match=r"label 9, but the model's read-out gives 5 outputs"):
        fit(user_models.norm_conv((1, 8, 8), 5), loaders, out=tmp_path / "r")
    with pytest.raises(ValueError, match=r"does not take the loader's examples of shape \(1, 8, 8\)"):
        fit(user_models.norm_conv((1, 16, 16), 10), loaders, out=tmp_path / "r")


def test_the_readme_loop_runs_on_a_wrapped_model():
    torch.manual_seed(0)
    net = wrap(user_models.norm_conv((1, 8, 8), 10), (1, 8, 8), 10)
    rule = make_rule("dtp")
    forward_opt = torch.optim.Adam(net.forward_parameters(), lr=1e-2)
    feedback_opt = torch.optim.Adam(net.feedback_parameters(), lr=1e-3)
    loader = digits_loaders()[0]
    first = None
    for epoch in range(3):
        for x, y in loader:
            record = rule.record(net, x)
            step = rule.forward_loss(net, record, y)
            loss = step.loss + rule.feedback_loss(net, record, step.targets)
            forward_opt.zero_grad()
            feedback_opt.zero_grad()
            loss.backward()
            forward_opt.step()
            feedback_opt.step()
            first = step.output_loss.item() if first is None else first
    assert step.output_loss.item() < 0.8 * first  # it learns


def test_a_plain_module_that_is_not_sequential_is_refused_by_fit(tmp_path):
    class Mine(nn.Module):
        def forward(self, x):
            return x
    with pytest.raises(ValueError, match="Mine is not one"):
        fit(Mine(), "digits", out=tmp_path / "r")


def test_rules_lists_the_networks_each_rule_trains(capsys):
    assert main(["rules", "dtp"]) == 0
    out = capsys.readouterr().out
    assert "the networks it trains:\n  chain:" in out and "  recurrent:" in out and "your own model" in out
    assert main(["rules", "generative"]) == 0
    assert "  stack: a generative stack" in capsys.readouterr().out


def test_settings_that_shape_built_networks_are_refused_for_a_model_of_ones_own(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))
    with pytest.raises(ValueError, match="'dropout' shape the networks targetprop builds"):
        fit(model, "digits", out=tmp_path / "r", dropout=0.2)
    assert not (tmp_path / "r").exists()


def test_fit_takes_an_architecture_spec_and_the_run_reopens_from_its_directory(tmp_path):
    summary = fit("mlp:16x2", "digits", rule="ldrl", epochs=1, out=tmp_path / "r")
    assert summary["completed"] and summary["arch"] == "mlp:16x2"
    run = load_run(tmp_path / "r")  # no model object needed: the spec rebuilds it
    assert len(run.net.layers) == 2
    with pytest.raises(ValueError, match="pass the model itself"):
        loader = DataLoader(TensorDataset(torch.zeros(8, 64), torch.zeros(8, dtype=torch.long)), batch_size=4)
        fit("mlp:16x2", (loader, loader), out=tmp_path / "s")
