"""Time one full training step (feedback and forward updates) per rule, on the
same network, batch and data, in one process; profile it (operations per
step, the share of time in matrix products); and count its floating-point
operations per training example (``torch.utils.flop_counter``)."""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from . import optim
from ..core.learner import Learner
from ..registry import build_network, make_rule, wrap_for
from .setup import PRECISIONS, read_every_state

__all__ = ["MATRIX_PRODUCTS", "VARIANTS", "count_flops", "profile_steps", "time_rules"]

# how a step may run besides plain float32 eager: Learner's precision and compile options
VARIANTS = {"eager": {}, "compile": {"compile": True}, "compile-feedback": {"compile": "feedback"},
            "bf16": {"precision": PRECISIONS["bf16"]},
            "bf16+compile": {"precision": PRECISIONS["bf16"], "compile": True}}

# the kernels that do a step's arithmetic; the rest of a step is overhead (small element-wise
# operations, views, copies, the optimizers' bookkeeping)
MATRIX_PRODUCTS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::addmv",
                             "aten::dot", "aten::mkldnn_convolution", "aten::convolution_backward",
                             "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
                             "aten::cudnn_convolution"})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _learners(rules: list[str], x: torch.Tensor, y: torch.Tensor, *, arch: str | None, num_classes: int,
              activation: str, warmup: int, seed: int, feedback_iterations: int,
              input_shape: tuple[int, ...] | None, variants: tuple[str, ...],
              net: nn.Module | None = None) -> dict[str, Learner]:
    """One learner per rule and variant (keyed ``rule+variant`` past the eager
    one), each on the network of the same seed (a copy of ``net``, if
    given, else ``arch`` built for the rule) and warmed up by ``warmup`` steps."""
    input_shape = tuple(input_shape or x.shape[1:])
    learners = {}
    for name in rules:
        for variant in variants:
            torch.manual_seed(seed)
            rule = make_rule(name)
            if net is None:
                options = {} if activation == "tanh" else {"activation": activation}
                model = build_network(arch, input_shape, num_classes, rule, **options)
            else:
                model = wrap_for(rule, copy.deepcopy(net), input_shape, num_classes)
            model = model.to(x.device, x.dtype)
            if y.dim() == 2:  # a target at every step
                read_every_state(model, rule, "these data")
            feedback = (optim.make_optimizer("adam", model.feedback_parameters(), 1e-4)
                        if rule.uses_feedback and model.feedback_parameters() else None)
            label = name if variant == "eager" else f"{name}+{variant}"
            learners[label] = Learner(model, rule, optim.make_optimizer("adam", model.forward_parameters(), 1e-4),
                                      feedback, feedback_iterations if feedback else 0, **VARIANTS[variant])
            for _ in range(warmup):  # compiles, where compiled
                learners[label].train_step(x, y)
    return learners


def time_rules(rules: list[str], x: torch.Tensor, y: torch.Tensor, *, arch: str | None = None, num_classes: int,
               activation: str = "tanh", repeats: int = 50, warmup: int = 5, seed: int = 0,
               feedback_iterations: int = 1, rounds: int = 5,
               input_shape: tuple[int, ...] | None = None,
               variants: tuple[str, ...] = ("eager",), net: nn.Module | None = None) -> dict[str, dict[str, float]]:
    """Median milliseconds per ``Learner.train_step`` for each rule (and each of
    ``variants``) and its ratio to eager ``bp`` (when ``bp`` is among the
    rules). Every learner is timed in turn for ``rounds`` rounds so that
    drifts in machine load hit all alike; ``quartiles`` are those of the
    single steps. ``input_shape``: the shape of one example of x (default:
    x's own). ``net``: a network to time (each rule gets a copy) instead of
    ``arch``."""
    learners = _learners(rules, x, y, arch=arch, num_classes=num_classes, activation=activation, warmup=warmup,
                         seed=seed, feedback_iterations=feedback_iterations, input_shape=input_shape,
                         variants=variants, net=net)
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


def profile_steps(rules: list[str], x: torch.Tensor, y: torch.Tensor, *, arch: str | None = None, num_classes: int,
                  activation: str = "tanh", steps: int = 20, warmup: int = 5, seed: int = 0,
                  feedback_iterations: int = 1, input_shape: tuple[int, ...] | None = None,
                  variants: tuple[str, ...] = ("eager",), net: nn.Module | None = None) -> dict[str, dict[str, float]]:
    """``torch.profiler`` over ``steps`` training steps of each rule:
    ``ops_per_step``, every ``aten::`` call (nested ones included, so that an
    operation composed of several counts as several), ``products_per_step``,
    the calls among them that are ``MATRIX_PRODUCTS``, ``product_ms``, the
    self time per step of the ``MATRIX_PRODUCTS`` (on the GPU, their kernel
    time), and ``optimizer_ms``, the time per step inside the optimizers'
    ``step`` (``optimizer_steps_per_step`` of them). The profiler adds its own
    cost to every call, so the step's time is ``time_rules``'s, not the
    profiled one."""
    learners = _learners(rules, x, y, arch=arch, num_classes=num_classes, activation=activation, warmup=warmup,
                         seed=seed, feedback_iterations=feedback_iterations, input_shape=input_shape,
                         variants=variants, net=net)
    on_gpu = x.device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
    result = {}
    for label, learner in learners.items():
        with torch.profiler.profile(activities=activities) as profiler:
            for _ in range(steps):
                learner.train_step(x, y)
            _sync(x.device)
        recorded = profiler.events()
        events = [e for e in recorded if e.name.startswith("aten::")]
        products = [e for e in events if e.name in MATRIX_PRODUCTS]
        product_ms = sum(e.self_device_time_total if on_gpu else e.self_cpu_time_total for e in products) / 1000
        optimizer_steps = [e for e in recorded if e.name.startswith("Optimizer.step#")]
        optimizer_ms = sum(e.device_time_total if on_gpu else e.cpu_time_total for e in optimizer_steps) / 1000
        result[label] = {"ops_per_step": len(events) / steps, "products_per_step": len(products) / steps,
                         "product_ms": product_ms / steps, "optimizer_steps_per_step": len(optimizer_steps) / steps,
                         "optimizer_ms": optimizer_ms / steps}
    return result


def count_flops(rules: list[str], x: torch.Tensor, y: torch.Tensor, *, arch: str | None = None, num_classes: int,
                activation: str = "tanh", seed: int = 0, feedback_iterations: int = 1,
                input_shape: tuple[int, ...] | None = None, net: nn.Module | None = None) -> dict[str, float]:
    """Floating-point operations of one training step of each rule (forward
    pass, targets, feedback and local losses, their backward passes), per
    training example: the matrix products and convolutions counted by
    ``torch.utils.flop_counter``'s formulas (2 per multiply-add), divided by
    the batch size. Element-wise work and the optimizers' updates are not
    counted, as in the published counts of the field."""
    learners = _learners(rules, x, y, arch=arch, num_classes=num_classes, activation=activation, warmup=1,
                         seed=seed, feedback_iterations=feedback_iterations, input_shape=input_shape,
                         variants=("eager",), net=net)
    result = {}
    for label, learner in learners.items():
        with _FlopCount() as counted:
            learner.train_step(x, y)
        result[label] = counted.total / len(x)
    return result


class _FlopCount(TorchDispatchMode):
    """The operations ``flop_registry`` has a formula for, summed. Not
    ``FlopCounterMode`` itself: its per-module tracking hooks the backward
    pass in a way ``torch.autograd.grad`` (the top target's gradient) refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out
