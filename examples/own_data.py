"""Train on arrays of your own: save them as a .npz file (x, y, and
optionally x_test, y_test), train DTP on it with `targetprop train`, score
the run with `targetprop evaluate` and label new examples with `targetprop
predict`. Three interleaved spirals stand in for your data: replace
make_arrays with your own loading.

    python examples/own_data.py --n 3000 --epochs 30 --out runs/own-data
"""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np


def make_arrays(n, classes, seed):
    """n noisy 2-D points on `classes` spiral arms: x (n, 2) float32, y (n,) integer labels 0..classes-1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    radius = rng.uniform(0.1, 1.0, n)
    angle = 2 * np.pi * (radius + y / classes)  # each arm turns once, offset by its class
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1) + rng.normal(0, 0.02, (n, 2))
    return x.astype(np.float32), y


def targetprop(*args):
    # the CLI of the targetprop installed for this Python, whether or not it is on PATH
    subprocess.run([sys.executable, "-m", "targetprop.cli", *map(str, args)], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="training examples to make")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--arch", default="mlp:64x3")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="runs/own-data")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    x, y = make_arrays(args.n, args.classes, seed=0)
    x_test, y_test = make_arrays(args.n // 4, args.classes, seed=1)
    np.savez(out / "spirals.npz", x=x, y=y, x_test=x_test, y_test=y_test)  # without x_test, 20 % is held out
    new_x, new_y = make_arrays(200, args.classes, seed=2)
    np.savez(out / "new.npz", x=new_x)  # predict needs x only
    np.savez(out / "new-labelled.npz", x=new_x, y=new_y)

    # an --arch spec (not a model object) lets evaluate and predict rebuild the net from the run alone
    run = out / "run"
    targetprop("train", "--data", out / "spirals.npz", "--rule", "dtp", "--arch", args.arch,
               "--epochs", args.epochs, "--out", run)
    targetprop("evaluate", run)  # the best checkpoint on the file's x_test, y_test
    targetprop("evaluate", run, "--data", out / "new-labelled.npz", "--out", out / "evaluation-new.json")
    targetprop("predict", run, "--data", out / "new.npz", "--out", out / "predictions.npz")

    predictions = np.load(out / "predictions.npz")  # classes (N,), probabilities (N, K)
    correct = np.mean(predictions["classes"] == new_y)
    print(f"predicted {len(new_y)} new points: {correct:.1%} correct -> {out / 'predictions.npz'}")


if __name__ == "__main__":
    main()
