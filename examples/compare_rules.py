"""Train one network of your own, a plain nn.Sequential, by back-propagation
and three target-propagation rules (dtp, drl, ldrl) with targetprop.fit, and
print a table of test accuracy and training time.

    python examples/compare_rules.py --data fashion-mnist --epochs 10 --out runs/compare
"""
import argparse
from pathlib import Path

import torch
from torch import nn

import targetprop


def my_net(width, depth, pixels=28 * 28, classes=10):
    """An MLP for 28x28 grey images (fashion-mnist, mnist-5k); change `pixels` for other data."""
    layers, features = [nn.Flatten()], pixels
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.Tanh()]  # each Linear + activation becomes one TP layer
        features = width
    return nn.Sequential(*layers, nn.Linear(features, classes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--rules", default="bp,dtp,drl,ldrl")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="training examples kept (quick runs)")
    parser.add_argument("--out", default="runs/compare")
    args = parser.parse_args()
    quick = {"limit": args.limit} if args.limit else {}

    rows = []
    for rule in args.rules.split(","):
        # a fresh model per rule (fit trains it in place), from the same initial weights
        torch.manual_seed(0)
        summary = targetprop.fit(my_net(args.width, args.depth), args.data, rule=rule, epochs=args.epochs,
                                 out=Path(args.out) / rule, **quick)
        rows.append((rule, summary["test_accuracy"], summary["seconds"]))

    print(f"\n{'rule':<6} {'test acc':>9} {'seconds':>8}")
    for rule, accuracy, seconds in rows:
        print(f"{rule:<6} {accuracy:>8.2%} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
