"""Semi-supervised learning with Bengio (2014)'s algorithm: keep the labels
of N training examples, train `bengio2014` on them plus the rest as
unlabelled examples, and compare it with `dtp` trained on the N labelled
examples alone, the same network for both.

    python examples/semi_supervised.py --labels 100 --epochs 10 --out runs/semi
"""
import argparse
from pathlib import Path

import torch
from torch import nn

import targetprop


def my_net(width=256, depth=5, pixels=28 * 28, classes=10, dropout=0.2):
    """A tanh MLP for 28x28 images; bengio2014 trains fully connected nets (each layer an auto-encoder)."""
    layers, features = [nn.Flatten()], pixels
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.Tanh(), nn.Dropout(dropout)]  # few labels: dropout helps both
        features = width
    return nn.Sequential(*layers, nn.Linear(features, classes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--labels", type=int, default=100, help="labelled training examples, balanced over classes")
    parser.add_argument("--epochs", type=int, default=10, help="bengio2014: passes over the unlabelled examples")
    parser.add_argument("--baseline-epochs", type=int, default=200,
                        help="dtp on the labels alone: 200 epochs of 100 labels in batches of 32 is about 800 steps")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="training examples kept, labelled or not (quick runs)")
    parser.add_argument("--out", default="runs/semi")
    args = parser.parse_args()
    common = {"labels": args.labels, "forward_scheduler": "cosineannealinglr", "seed": 0}  # same seed: same labels
    if args.limit:
        common["limit"] = args.limit

    # 16 labelled examples in every batch of 128, so the few labels are seen throughout each epoch
    torch.manual_seed(0)  # both nets start from the same weights
    semi = targetprop.fit(my_net(args.width, args.depth), args.data, rule="bengio2014", epochs=args.epochs,
                          out=Path(args.out) / "bengio2014", labelled_per_batch=16, **common)
    # dtp cannot use unlabelled examples: it trains on the N alone (and says so)
    torch.manual_seed(0)
    alone = targetprop.fit(my_net(args.width, args.depth), args.data, rule="dtp", epochs=args.baseline_epochs,
                           out=Path(args.out) / "dtp-labels-only", batch_size=32, **common)

    print(f"\n{args.labels} labels, test accuracy:")
    print(f"bengio2014, labelled + unlabelled: {semi['test_accuracy']:.2%}")
    print(f"dtp, labelled examples alone:      {alone['test_accuracy']:.2%}")


if __name__ == "__main__":
    main()
