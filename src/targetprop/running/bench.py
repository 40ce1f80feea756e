"""Time one full training step (feedback and forward updates) per rule, on the
same network, batch and data, in one process."""
from __future__ import annotations

import statistics
import time

import torch

from . import optim
from ..core.learner import Learner
from ..registry import make_rule
from .setup import PRECISIONS

__all__ = ["VARIANTS", "time_rules"]

# how a step may run besides plain float32 eager: Learner's precision and compile options
VARIANTS = {"eager": {}, "compile": {"compile": True}, "bf16": {"precision": PRECISIONS["bf16"]},
            "bf16+compile": {"precision": PRECISIONS["bf16"], "compile": True}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rules(rules: list[str], x: torch.Tensor, y: torch.Tensor, *, arch: str, num_classes: int,
               activation: str = "tanh", repeats: int = 50, warmup: int = 5, seed: int = 0,
               feedback_iterations: int = 1, rounds: int = 5,
               input_shape: int | tuple[int, ...] | None = None,
               variants: tuple[str, ...] = ("eager",)) -> dict[str, dict[str, float]]:
    """Median milliseconds per ``Learner.train_step`` for each rule (and each of
    ``variants``, keyed ``rule+variant`` past the eager one) and its ratio to
    eager ``bp`` (when ``bp`` is among the rules). Every learner is timed in
    turn for ``rounds`` rounds so that drifts in machine load hit all alike;
    ``quartiles`` are those of the single steps. ``input_shape``: the shape
    of one example of x, for convolutional and recurrent nets."""
    learners = {}
    for name in rules:
        for variant in variants:
            torch.manual_seed(seed)
            rule = make_rule(name)
            net = rule.build_network(arch, input_shape or x.shape[1], num_classes, activation).to(x.device, x.dtype)
            feedback = (optim.make_optimizer("adam", net.feedback_parameters(), 1e-4)
                        if rule.uses_feedback and net.feedback_parameters() else None)
            label = name if variant == "eager" else f"{name}+{variant}"
            learners[label] = Learner(net, rule, optim.make_optimizer("adam", net.forward_parameters(), 1e-4),
                                      feedback, feedback_iterations if feedback else 0, **VARIANTS[variant])
            for _ in range(warmup):  # compiles, where compiled
                learners[label].train_step(x, y)
    times: dict[str, list[float]] = {label: [] for label in learners}
    for _ in range(rounds):
        for name, learner in learners.items():
            for _ in range(max(repeats // rounds, 1)):
                _sync(x.device)
                start = time.perf_counter()
                learner.train_step(x, y)
                _sync(x.device)
                times[name].append((time.perf_counter() - start) * 1000)
    result = {name: {"step_ms": statistics.median(t), "quartiles": statistics.quantiles(t, n=4)[::2]}
              for name, t in times.items()}
    if "bp" in result:
        for entry in result.values():
            entry["ratio_to_bp"] = entry["step_ms"] / result["bp"]["step_ms"]
    return result
