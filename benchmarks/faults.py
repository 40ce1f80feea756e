"""Faults and bad inputs, and what a run does with each: the documentation's
reliability table, from real processes.

Every bad input of ``tests/test_faults.py``'s ``CASES`` runs here as its own
``targetprop`` process, and its exit code and message are recorded as they
came; the faults a process cannot cause on itself (signals, a killed worker,
a kill during a checkpoint write, a full disk, a held run directory) are the
tests of that file and the sweep's, run under pytest, with their outcome.

    python benchmarks/faults.py        # -> benchmarks/results/faults.{json,md}
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_faults import CASES  # noqa: E402  (the table of cases lives beside its tests)

# The fault tests, as the table names them.
SCENARIOS = {
    "a_stop_signal_saves_mid_epoch_and_resumes_exactly": "SIGTERM / SIGINT / SIGUSR1, one process",
    "two_processes_stop_at_the_same_batch_on_a_signal_and_resume_exactly": "SIGTERM / SIGINT / SIGUSR1, --nproc 2",
    "a_second_ctrl_c_stops_at_once": "a second Ctrl-C",
    "a_signal_not_asked_for_is_left_alone": "a signal not in stop_signals",
    "ctrl_c_during_start_up_leaves_nothing": "Ctrl-C during start-up",
    "a_worker_that_dies_ends_the_run": "a worker killed (SIGKILL): --nproc 2, bare torchrun",
    "a_kill_during_a_checkpoint_write": "SIGKILL during a checkpoint write",
    "a_full_disk_keeps_the_last_good_checkpoint": "a full disk (ENOSPC) while saving",
    "a_second_run_on_the_same_directory_is_refused": "a second run on the same --out",
    "an_existing_run_is_not_overwritten": "a new run on a finished run's --out",
    "a_stopped_sweep_loses_nothing": "a sweep stopped by Ctrl-C or killed (SIGKILL)",
}


def run_case(case, folder: Path) -> dict:
    folder.mkdir(parents=True)
    if case.prepare is not None:
        case.prepare(folder)
    argv = [a.replace("{d}", str(folder)) for a in case.argv]
    if "--out" not in argv and argv[0] == "train":
        argv += ["--out", str(folder / "run")]
    process = subprocess.run([sys.executable, "-m", "targetprop.cli", *argv], capture_output=True, text=True,
                             env=os.environ | {"TQDM_DISABLE": "1"}, timeout=600)
    lines = process.stderr.replace(str(folder), "DIR").strip().splitlines()
    return {"case": case.name, "exit_code": process.returncode, "message": lines[-1] if lines else "",
            "stderr_lines": len(lines), "expected": case.message,
            "as_expected": process.returncode == 2 and len(lines) == 1 and case.message in process.stderr}


def run_scenarios(folder: Path) -> list[dict]:
    report = folder / "report.xml"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests/test_faults.py"),
                    str(ROOT / "tests/test_sweep.py"), "-k", "not bad_input and (test_faults or stopped_sweep)",
                    f"--junitxml={report}"], cwd=ROOT, timeout=3600)
    rows = []
    for test in ElementTree.parse(report).getroot().iter("testcase"):
        name = test.get("name")
        what = next((label for key, label in SCENARIOS.items() if key in name), name)
        failed = test.find("failure") is not None or test.find("error") is not None
        skipped = test.find("skipped") is not None
        rows.append({"scenario": what, "test": name, "outcome": "skipped" if skipped else
                     "failed" if failed else "passed", "seconds": float(test.get("time", 0))})
    print(f"fault tests: {time.perf_counter() - started:.0f} s")
    return rows


def write(cases: list[dict], scenarios: list[dict]) -> None:
    out = ROOT / "benchmarks/results"
    (out / "faults.json").write_text(json.dumps({"cases": cases, "scenarios": scenarios}, indent=2) + "\n")
    lines = ["# Faults and bad inputs", "", "`python benchmarks/faults.py`: each bad input as its own `targetprop` "
             "process (exit code 2 is a clear error before any work; nothing is written), then the fault tests "
             "of `tests/test_faults.py` and the stopped sweeps of `tests/test_sweep.py`.", "",
             f"Bad inputs: {sum(c['as_expected'] for c in cases)} of {len(cases)} end as a one-line error, exit 2.",
             "", "| bad input | exit | message |", "|---|---|---|"]
    lines += [f"| {c['case']} | {c['exit_code']} | {_shortened(c['message'])} |" for c in cases]
    lines += ["", f"Faults: {sum(s['outcome'] == 'passed' for s in scenarios)} of {len(scenarios)} tests pass "
              "(each asserts the exit code, the message, the checkpoint kept and, where the run goes on, that "
              "`--resume` ends with the weights of an uninterrupted run).", "",
              "| fault | test | outcome |", "|---|---|---|"]
    lines += [f"| {s['scenario']} | `{s['test']}` | {s['outcome']} |" for s in scenarios]
    (out / "faults.md").write_text("\n".join(lines) + "\n")
    print(out / "faults.md")


def _shortened(message: str, limit: int = 200) -> str:
    message = message.replace("|", "/").replace("`", "'")
    return f"`{message if len(message) <= limit else message[:limit - 1] + '…'}`"  # as printed, not as markdown


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        cases = [run_case(case, Path(scratch) / f"case{i}") for i, case in enumerate(CASES)]
        for row in cases:
            print(f"{'ok ' if row['as_expected'] else 'BAD'} {row['exit_code']:>3}  {row['case']}: {row['message']}")
        write(cases, run_scenarios(Path(scratch)))


if __name__ == "__main__":
    main()
