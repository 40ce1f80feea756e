"""Question 13's second half: can the storage of the state sequence be
avoided? Peak memory and time per update against the sequence length T for
back-propagation through time and for §5's recipe, stored and streaming.

    python benchmarks/recurrent_memory.py --lengths 50,100,200,400,800 \\
        --variants "bp;bp:truncation=20;bengio2014;bengio2014:stream_window=20"

Each (variant, T) runs twice, each time in a fresh process: ``rnn:100`` on
one batch of 128 adding sequences, ``UPDATES`` updates (Adam, 1 thread).
The first reports the peak resident memory during the updates above what
the process held before the first, with glibc told to return every block
of 64 KiB or more to the system at once (so resident memory follows what
is live, at a cost in time); the second, with the allocator as it comes,
the median time per update after the first. Subnormal floats count as zero,
as in a training run (``flush_denormal``; ``--subnormals`` keeps them). Results to
benchmarks/results/NAME.{json,md} (NAME ``recurrent_memory``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
UPDATES = 6
BATCH, WIDTH = 128, 100
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def parse_variant(text: str) -> tuple[str, dict]:
    """``rule`` or ``rule:key=value,key=value``."""
    rule, _, rest = text.partition(":")
    settings = dict(item.split("=", 1) for item in rest.split(",") if item)
    return rule, {key: json.loads(value) for key, value in settings.items()}


def resident_kib() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def measure(variant: str, length: int, subnormals: bool = False) -> dict:
    """In this process: the peak memory (MiB) above the resident set before
    the first update, and the median ms per update after the first."""
    import numpy as np
    import torch

    from targetprop import Learner, build_network, make_rule
    from targetprop.running.optim import make_optimizer
    from targetprop.running.sequences import adding

    torch.set_num_threads(1)
    torch.set_flush_denormal(not subnormals)  # flushed, as a training run does by default
    torch.manual_seed(0)
    rule_name, settings = parse_variant(variant)
    rule = make_rule(rule_name, **settings)
    net = build_network(f"rnn:{WIDTH}", (length, 2), 1, rule)
    x, y = adding(BATCH, length, np.random.default_rng(0))
    x, y = torch.from_numpy(x).flatten(1), torch.from_numpy(y)
    feedback = make_optimizer("adam", net.feedback_parameters(), 1e-3) if rule.uses_feedback else None
    learner = Learner(net, rule, make_optimizer("adam", net.forward_parameters(), 1e-3), feedback, 1)
    before = resident_kib()
    times = []
    for _ in range(UPDATES):
        start = time.perf_counter()
        learner.train_step(x, y)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"variant": variant, "length": length, "peak_mib": max(peak - before, 0) / 1024,
            "ms_per_update": 1000 * statistics.median(times[1:])}


def worker(variant: str, length: int, env: dict, subnormals: bool) -> dict:
    command = [sys.executable, __file__, "--worker", variant, str(length)] + ["--subnormals"] * subnormals
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="50,100,200,400,800")
    parser.add_argument("--variants", default="bp;bp:truncation=20;bengio2014;bengio2014:stream_window=20")
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--name", default="recurrent_memory")
    parser.add_argument("--subnormals", action="store_true", help="keep subnormal floats (torch's default)")
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker[0], int(args.worker[1]), args.subnormals)))
        return
    variants, lengths = args.variants.split(";"), [int(t) for t in args.lengths.split(",")]
    results = []
    for length in lengths:
        for variant in variants:  # interleaved: each T sees every variant in turn
            memory, timing = (worker(variant, length, os.environ | {"OMP_NUM_THREADS": "1"} | allocator,
                                     args.subnormals) for allocator in (ALLOCATOR, {}))
            results.append(memory | {"ms_per_update": timing["ms_per_update"]})
            print(results[-1], flush=True)
    lines = [f"`rnn:{WIDTH}`, batch {BATCH}, adding problem, {UPDATES} updates per process, 1 thread: "
             "peak resident memory above the process's before its first update (MiB, glibc returning "
             "freed blocks at once), and median ms per update (another process, glibc as it comes).", "",
             "| T | " + " | ".join(f"`{v}` MiB | ms" for v in variants) + " |",
             "|---|" + "---|---|" * len(variants)]
    for length in lengths:
        cells = [next(r for r in results if r["variant"] == v and r["length"] == length) for v in variants]
        lines.append(f"| {length} | " + " | ".join(f"{c['peak_mib']:.1f} | {c['ms_per_update']:.1f}"
                                                  for c in cells) + " |")
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (results_dir / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
