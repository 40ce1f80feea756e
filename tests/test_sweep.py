"""``targetprop sweep``: the search-space file, the study on Optuna (seeded,
pruned, resumable, shared by processes) and the retrained best."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from targetprop.cli import main
from targetprop.running.config import Config, ConfigError
from targetprop.running.space import load_space

optuna = pytest.importorskip("optuna")
pytest.importorskip("sklearn")  # digits

SPACE = """
shared:
  forward_lr: {low: 1e-6, high: 1e-2, log: true}
  feedback_lr: {low: 1e-4, high: 1e-2, log: true}
  batch_size: {choices: [32, 64]}
  forward_scheduler: cosineannealinglr
rules:
  dtp:
    target_step: {low: 0.01, high: 1.0}
    feedback_iterations: {low: 1, high: 3}
"""


def _space(folder: Path, text: str = SPACE) -> Path:
    path = folder / "space.yaml"
    path.write_text(text)
    return path


def _sweep(folder: Path, *more: str, rule: str = "dtp") -> list[str]:
    return ["sweep", "--rule", rule, "--data", "digits", "--arch", "mlp:32x2", "--space", str(folder / "space.yaml"),
            "--out", str(folder / "sweep"), "--set", "threads=1", *more]


def _report(folder: Path) -> dict:
    return json.loads((folder / "sweep" / "sweep.json").read_text())


def test_the_space_file_gives_ranges_choices_and_fixed_values(tmp_path):
    space = load_space(_space(tmp_path), "dtp", Config(data="digits"))
    dims = {d.name: d for d in space.dimensions}
    assert dims["forward_lr"].log and (dims["forward_lr"].low, dims["forward_lr"].high) == (1e-6, 1e-2)
    assert dims["batch_size"].choices == (32, 64)
    assert not dims["target_step"].log and not dims["target_step"].integer
    assert dims["feedback_iterations"].integer and (dims["feedback_iterations"].low, dims["feedback_iterations"].high) == (1, 3)
    assert space.fixed == {"forward_scheduler": "cosineannealinglr"}
    # back-prop reads no feedback setting: the shared one is left out of its sweep, the rest is the same
    bp = load_space(tmp_path / "space.yaml", "bp", Config(data="digits"))
    assert [d.name for d in bp.dimensions] == ["forward_lr", "batch_size"] and bp.unused == ("feedback_lr",)


@pytest.mark.parametrize("text, message", [
    ("shared: {colour: {low: 1, high: 2}}", "shared.colour is not a setting"),
    ("rules: {dtp: {alpha: 0.1}}", "rules.dtp.alpha is not a setting of rule dtp"),
    ("rules: {nope: {}}", "unknown rule(s) nope"),
    ("shared: {forward_lr: {low: 1e-3, high: 1e-3}}", "empty or inverted range [0.001, 0.001]"),
    ("shared: {forward_lr: {low: 1e-2, high: 1e-3}}", "empty or inverted range"),
    ("shared: {forward_lr: {low: 0, high: 1e-3, log: true}}", "log-uniform, so low must be > 0"),
    ("shared: {forward_lr: {low: -1, high: 1e-3}}", "'forward_lr' must be > 0"),
    ("shared: {forward_lr: {low: 1e-3}}", "is a range {low: L, high: H"),
    ("shared: {batch_size: {choices: []}}", "empty list"),
    ("shared: {batch_size: {low: 16, high: 64.5}}", "needs whole ends"),
    ("shared: {forward_optimizer: {choices: [adam, nosuch]}}", "nosuch"),
    ("shared: {epochs: {low: 1, high: 3}}", "given by the sweep's own options"),
    ("- forward_lr", "a mapping with sections"),
])
def test_a_bad_space_file_is_refused_naming_the_setting(tmp_path, text, message):
    with pytest.raises(ConfigError, match="search space") as error:
        load_space(_space(tmp_path, text), "dtp", Config(data="digits"))
    assert message in str(error.value)


@pytest.mark.slow
def test_a_sweep_prunes_retrains_its_best_and_continues_on_a_second_call(tmp_path, capsys):
    _space(tmp_path)
    assert main(_sweep(tmp_path, "--trials", "6", "--epochs", "4", "--seeds", "2")) == 0
    report = _report(tmp_path)
    assert report["finished"] == 6 and report["rule"] == "dtp" and report["epochs"] == 4
    states = [t["state"] for t in report["trials"]]
    assert "PRUNED" in states and "COMPLETE" in states  # lr 1e-6 is drawn here: far below the median
    for trial in report["trials"]:
        metrics = (tmp_path / "sweep" / "trials" / str(trial["number"]) / "metrics.csv").read_text().splitlines()
        assert len(metrics) - 1 == trial["epochs"]  # a header, then one row per reported epoch
        assert trial["epochs"] == 4 or trial["state"] == "PRUNED"
    best = max((t for t in report["trials"] if t["state"] == "COMPLETE"), key=lambda t: t["value"])
    assert report["best"]["trial"] == best["number"] and report["best"]["validation"] == best["value"]
    assert report["best"]["settings"] == best["params"] | {"forward_scheduler": "cosineannealinglr"}
    runs = report["best"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for run in runs:  # on the whole training set: no validation split
        config = (tmp_path / "sweep" / "best" / f"seed-{run['seed']}" / "config.yaml").read_text()
        assert "val_size: 0" in config and f"target_step: {best['params']['target_step']}" in config
    accuracies = [r["test_accuracy"] for r in runs]
    assert report["best"]["test_accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    for name in ("history", "epochs", "importances"):
        assert (tmp_path / "sweep" / f"sweep_{name}.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert f"best: trial {best['number']}" in out and "retrained on the whole training set (2 seeds)" in out

    # the same study, more trials: the six are kept, two new ones drawn (not the first draws again)
    assert main(_sweep(tmp_path, "--trials", "8", "--epochs", "4", "--no-retrain")) == 0
    again = _report(tmp_path)
    assert again["finished"] == 8 and again["trials"][:6] == report["trials"]
    firsts = {json.dumps(t["params"], sort_keys=True) for t in report["trials"]}
    assert not {json.dumps(t["params"], sort_keys=True) for t in again["trials"][6:]} & firsts


def test_the_sampler_is_seeded(tmp_path):
    _space(tmp_path, "shared: {forward_lr: {low: 1e-4, high: 1e-2, log: true}}")
    drawn = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = tmp_path / name
        assert main(["sweep", "--rule", "bp", "--data", "digits", "--arch", "mlp:16", "--space",
                     str(tmp_path / "space.yaml"), "--out", str(out), "--trials", "2", "--epochs", "1", "--seed", seed,
                     "--no-retrain", "--set", "threads=1", "--set", "limit=200"]) == 0
        drawn[name] = [t["params"] for t in json.loads((out / "sweep.json").read_text())["trials"]]
    assert drawn["a"] == drawn["b"] and drawn["a"] != drawn["c"]


def test_a_study_of_another_search_is_refused(tmp_path, capsys):
    _space(tmp_path, "shared: {forward_lr: {low: 1e-4, high: 1e-2, log: true}}")

    def sweep(rule: str, epochs: str = "1", limit: str = "200", threads: str = "1") -> int:
        return main(_sweep(tmp_path, "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--study", "s", "--trials",
                           "1", "--epochs", epochs, "--no-retrain", "--set", f"limit={limit}",
                           "--set", f"threads={threads}", rule=rule))

    assert sweep("bp") == 0
    assert sweep("dtp") == 2
    assert "study 's' in sqlite" in capsys.readouterr().err
    assert sweep("bp", epochs="2") == 2
    assert "epochs 1 (now 2)" in capsys.readouterr().err
    assert sweep("bp", limit="300") == 2  # the trials would start from other settings
    assert "settings {'limit': 200} (now {'limit': 300})" in capsys.readouterr().err
    assert sweep("bp", threads="2") == 0  # machinery, not a setting of what is computed


@pytest.mark.slow
def test_jobs_share_one_study(tmp_path):
    _space(tmp_path, "shared: {forward_lr: {low: 1e-4, high: 1e-2, log: true}}")
    assert main(_sweep(tmp_path, "--trials", "6", "--epochs", "2", "--jobs", "2", "--no-retrain", rule="bp")) == 0
    report = _report(tmp_path)
    assert report["finished"] >= 6  # each process stops once the study holds enough: one may overshoot
    assert {t["worker"] for t in report["trials"]} == {1, 2}
    assert len({json.dumps(t["params"]) for t in report["trials"]}) == len(report["trials"])


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_a_stopped_sweep_loses_nothing_its_trial_resumes_from_the_checkpoint(tmp_path, stop):
    _space(tmp_path, "shared: {forward_lr: {low: 1e-4, high: 1e-2, log: true}}")
    argv = [sys.executable, "-m", "targetprop.cli", *_sweep(tmp_path, "--trials", "1", "--epochs", "150",
                                                            "--no-retrain", "--no-prune", rule="bp")]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "sweep" / "trials" / "0" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 5) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(stop)
    _, err = process.communicate(timeout=120)
    if stop == signal.SIGINT:
        assert process.returncode == 130, err
        assert "run the same command to continue the sweep" in err and "Traceback" not in err
    else:  # its trial is left running in the study: noticed once its heartbeat is 30 s old
        assert process.returncode == -signal.SIGKILL
        time.sleep(31)
    done = len(metrics.read_text().splitlines()) - 1

    rerun = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "trial 1 (continues 0)" in rerun.stdout
    report = _report(tmp_path)
    assert [(t["state"], t.get("continues")) for t in report["trials"]] == [("FAIL", None), ("COMPLETE", 0)]
    assert report["trials"][0]["params"] == report["trials"][1]["params"]
    epochs = [line.split(",")[0] for line in metrics.read_text().splitlines()[1:]]
    assert done >= 4
    assert epochs == [str(e) for e in range(1, 151)]  # one run, resumed: no epoch lost or twice
    assert report["trials"][1]["epochs"] == 150


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "benchmarks").glob("sweep_space*.yaml")),
                         ids=lambda p: p.name)
def test_the_committed_search_spaces_load_for_every_rule(path):
    """Each benchmark's space file is valid for back-prop and every rule it names."""
    import yaml

    rules = ["bp", *(yaml.safe_load(path.read_text()).get("rules") or {})]
    for rule in rules:
        space = load_space(path, rule, Config(data="digits", rule=rule))
        assert space.dimensions, rule
