"""Watch one setting train, step by step: every ``--every`` steps, test
accuracy and, per layer, the angle of the rule's update to back-prop's, the
mean target step ‖ĥ_l − h_l‖, the mean activity ‖h_l‖ and the norm of the
batch-mean activity ‖mean_n h_l‖ on a fixed batch of 512 training images, and
the norm of the forward weights ‖W_l‖. For finding out why a rule breaks where it breaks;
settings as ``targetprop train --set`` takes them.

    python benchmarks/probe.py --steps 420 --every 105 rule=dtp arch=mlp:256x8 activation=relu
"""
from __future__ import annotations

import argparse

import torch

from targetprop.core.diagnostics import layer_diagnostics
from targetprop.registry import make_rule
from targetprop.running.config import load_config
from targetprop.running.setup import build_parts, load_splits, validate_config


def row(name: str, values: list[float], spec: str) -> str:
    return f"  {name:<7}" + " ".join(format(v, spec) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=420)
    parser.add_argument("--every", type=int, default=105)
    parser.add_argument("settings", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()

    config = validate_config(load_config(overrides=args.settings))
    torch.manual_seed(config.seed)
    rule = make_rule(config.rule, **config.rule_settings)
    splits = load_splits(config, rule)
    parts = build_parts(config, rule, splits, splits.targets_per_step, torch.device("cpu"))
    x, y = splits.train.tensors
    x_test, y_test = splits.test.tensors
    probe = x[:512], y[:512]
    for step in range(args.steps + 1):
        if step % args.every == 0:
            d = layer_diagnostics(parts.net, rule, *probe)
            with torch.no_grad():
                accuracy = (parts.net(x_test).argmax(1) == y_test).float().mean().item()
                hs = rule.record(parts.net, probe[0]).hs[1:]
            layers = range(1, len(hs) + 1)
            print(f"step {step}: test accuracy {accuracy:.4f}")
            print(row("angle", [d.get(f"angle_{l}", float("nan")) for l in layers], "6.0f"))
            print(row("target", [d.get(f"target_{l}", float("nan")) for l in layers], "6.0e"))
            print(row("|h|", [h.norm(dim=1).mean().item() for h in hs], "6.0e"))
            print(row("|mean|", [h.mean(0).norm().item() for h in hs], "6.0e"))
            print(row("|W|", [layer.weights()[0].norm().item() for layer in parts.net.layers], "6.1f"),
                  flush=True)
        batch = torch.randint(0, len(x), (config.batch_size,))
        parts.learner.train_step(x[batch], y[batch])


if __name__ == "__main__":
    main()
