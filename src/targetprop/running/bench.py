"""Time one full training step (feedback and forward updates) per rule, on the
same network, batch and data, in one process."""
from __future__ import annotations

import statistics
import time

import torch

from . import optim
from ..core.learner import Learner
from ..registry import make_rule

__all__ = ["time_rules"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rules(rules: list[str], x: torch.Tensor, y: torch.Tensor, *, arch: str, num_classes: int,
               activation: str = "tanh", repeats: int = 50, warmup: int = 5, seed: int = 0,
               feedback_iterations: int = 1, rounds: int = 5,
               image_shape: tuple[int, ...] | None = None) -> dict[str, dict[str, float]]:
    """Median milliseconds per ``Learner.train_step`` for each rule and its ratio
    to ``bp`` (when ``bp`` is among the rules). Rules are timed in turn for
    ``rounds`` rounds so that drifts in machine load hit every rule alike.
    ``image_shape``: the shape of one example of x, for convolutional nets."""
    learners = {}
    for name in rules:
        torch.manual_seed(seed)
        rule = make_rule(name)
        net = rule.build_network(arch, image_shape or x.shape[1], num_classes, activation).to(x.device, x.dtype)
        feedback = (optim.make_optimizer("adam", net.feedback_parameters(), 1e-4)
                    if rule.uses_feedback and net.feedback_parameters() else None)
        learners[name] = Learner(net, rule, optim.make_optimizer("adam", net.forward_parameters(), 1e-4),
                                 feedback, feedback_iterations if feedback else 0)
        for _ in range(warmup):
            learners[name].train_step(x, y)
    times: dict[str, list[float]] = {name: [] for name in rules}
    for _ in range(rounds):
        for name, learner in learners.items():
            for _ in range(max(repeats // rounds, 1)):
                _sync(x.device)
                start = time.perf_counter()
                learner.train_step(x, y)
                _sync(x.device)
                times[name].append((time.perf_counter() - start) * 1000)
    result = {name: {"step_ms": statistics.median(t)} for name, t in times.items()}
    if "bp" in result:
        for entry in result.values():
            entry["ratio_to_bp"] = entry["step_ms"] / result["bp"]["step_ms"]
    return result
