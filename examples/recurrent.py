"""A recurrent net trained two ways on a sequence task: `bp`, which is
back-propagation through time, and `dtp`, which carries targets back through
time with a learned backward step (target propagation through time). Prints
the test accuracy and time of each.

    python examples/recurrent.py --data fashion-mnist-rows --arch rnn:128 --epochs 5 --out runs/recurrent
"""
import argparse
from pathlib import Path

import torch

import targetprop

# (steps, features per step) and classes of each task: build_network needs the examples' shape
TASKS = {
    "fashion-mnist-rows": lambda seq_len: ((28, 28), 10),   # an image read row by row
    "temporal-order": lambda seq_len: ((seq_len, 8), 4),    # one-hot symbols a-d, B, E, X, Y; 4 orders of X/Y
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist-rows", choices=sorted(TASKS))
    parser.add_argument("--arch", default="rnn:128", help="rnn:WIDTH (Elman) or gru:WIDTH")
    parser.add_argument("--seq-len", type=int, default=60, help="temporal-order: length of a sequence")
    parser.add_argument("--rules", default="bp,dtp")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="training sequences kept (quick runs)")
    parser.add_argument("--out", default="runs/recurrent")
    args = parser.parse_args()
    shape, classes = TASKS[args.data](args.seq_len)
    settings = {"seq_len": args.seq_len} if args.data != "fashion-mnist-rows" else {}
    if args.limit:
        settings["limit"] = args.limit

    results = {}
    for rule in args.rules.split(","):
        # the net unrolled over the steps, with the backward step g the rule needs (dtp) or none (bp);
        # fit's seed does not reach a net built before it: seed here, so both rules start alike
        torch.manual_seed(0)
        net = targetprop.build_network(args.arch, shape, classes, rule)
        results[rule] = targetprop.fit(net, args.data, rule=rule, epochs=args.epochs,
                                       out=Path(args.out) / rule, **settings)

    print(f"\n{args.arch} on {args.data}:")
    for rule, summary in results.items():
        print(f"{rule:<4} test accuracy {summary['test_accuracy']:.2%}  {summary['seconds']:.1f}s")


if __name__ == "__main__":
    main()
