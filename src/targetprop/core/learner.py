"""The stateful shell around a rule: it owns the network, the rule and the
forward and feedback optimizers, and runs one training step at a time.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from .networks import Network
from .normalization import running_statistics_frozen
from .rule import Rule

Tensor = torch.Tensor

__all__ = ["COMPILE_MODES", "Learner", "StepResult"]

# what Learner(compile=...) hands to torch.compile: nothing, the rule's whole part of the step, or its feedback objective
COMPILE_MODES = ("none", "rule", "feedback")


@dataclass
class StepResult:
    output_loss: Tensor          # the rule's output loss before the update (detached)
    scores: dict                 # the rule's training scores (``Rule.train_scores``), detached
    feedback_loss: Tensor | None


class Learner:
    """One training step, in the order of Lee et al. (2015), Algorithm 1:

    1. forward pass, recording every h_l;
    2. targets from the current feedback maps (under ``no_grad``) and the local
       losses Σ_l ½‖f_l(h_{l-1}) − ĥ_l‖²;
    3. one step of the feedback optimizer (none with ``feedback_iterations=0``);
    4. one step of the forward optimizer toward the targets of step 2.

    The targets are constants and the feedback losses never reach f, so the
    feedback loss and the local losses share one backward pass. With
    ``feedback_iterations`` = k > 1, k − 1 feedback-only steps, each on a
    fresh forward pass and without targets (the objective of feedback
    pre-training), come before step 1: the targets are then taken from
    inverses that have already adapted to this batch, and no step reuses a
    graph that an earlier update has invalidated.

    Batch norms move their running statistics once per step, on the
    forward pass of step 1 (:mod:`.normalization`); feedback-only steps move
    none.

    ``synchronize``, if set, is called on the parameters between every
    backward pass and the optimizer steps (data-parallel training averages
    their gradients there: :mod:`running.distributed`).

    ``precision=torch.bfloat16`` runs the forward pass, the targets and the
    losses under autocast (weights, gradients and optimizer state stay in the
    network's dtype). ``compile=True`` (or ``"rule"``) hands that same
    computation, the part of the step that the rule defines, to
    ``torch.compile``; the backward pass is compiled with it, the optimizer
    steps stay eager. ``compile="feedback"`` compiles only the piece that
    fuses best, the rule's feedback objective (noise, g on the forward maps'
    noisy outputs, the loss), and leaves the rest eager.

    ``clip_norms`` (forward, feedback): > 0 scales each optimizer's gradient
    down to that global norm before its step (``clip_grad_norm_``; one norm
    over all of its layers, so not a layer-local operation).
    """

    def __init__(self, net: Network, rule: Rule, forward_optimizer: torch.optim.Optimizer,
                 feedback_optimizer: torch.optim.Optimizer | None = None,
                 feedback_iterations: int = 1, *, precision: torch.dtype | None = None,
                 compile: bool | str = False, clip_norms: tuple[float, float] = (0.0, 0.0)):
        rule.check_network(net)
        if rule.uses_feedback and feedback_optimizer is None and feedback_iterations > 0:
            raise ValueError(f"rule {rule.name!r} trains feedback maps: give a feedback optimizer")
        self.net, self.rule = net, rule
        self.forward_optimizer, self.feedback_optimizer = forward_optimizer, feedback_optimizer
        self.feedback_iterations = feedback_iterations if rule.uses_feedback else 0
        self.synchronize: Callable[[list[torch.nn.Parameter]], None] | None = None
        self.precision = precision
        self.clip_norms = {id(forward_optimizer): clip_norms[0], id(feedback_optimizer): clip_norms[1]}
        mode = {False: "none", True: "rule"}.get(compile, compile)
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(map(repr, COMPILE_MODES))} (or a bool), "
                             f"got {compile!r}")
        if mode != "none" and any(getattr(layer, "_norms", None) for layer in net.layers):
            raise ValueError("compile: a layer with batch norms switches their statistics for each evaluation "
                             "of its map (core.normalization), which torch.compile does not trace; run it eager "
                             "(compile=false) or use LayerNorm/GroupNorm")
        whole = mode == "rule"
        self._losses = torch.compile(self._rule_losses) if whole else self._rule_losses
        self._feedback_losses = torch.compile(self._rule_feedback_loss) if whole else self._rule_feedback_loss
        self._feedback_objective = torch.compile(rule.feedback_loss) if mode == "feedback" else rule.feedback_loss

    def _autocast(self, x: Tensor):
        if self.precision is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.precision)

    def _rule_losses(self, x: Tensor, y: Tensor, with_feedback: bool):
        """The rule's part of a step: record, targets and local losses, and
        (``with_feedback``) the feedback loss on the same record."""
        with self._autocast(x):
            record = self.rule.record(self.net, x)
            result = self.rule.forward_loss(self.net, record, y)
            feedback_loss = self._feedback_objective(self.net, record, result.targets) if with_feedback else None
        return record, result, feedback_loss

    def _rule_feedback_loss(self, x: Tensor) -> Tensor | None:
        with self._autocast(x):
            with torch.no_grad(), running_statistics_frozen():  # it trains no forward map: moves no statistics
                record = self.rule.record(self.net, x)
            return self._feedback_objective(self.net, record)

    def feedback_step(self, x: Tensor) -> Tensor | None:
        """One step on the rule's feedback loss alone, without targets, on a
        fresh forward pass; returns the loss before it. Both optimizers step:
        one whose parameters got no gradient from that loss (the forward
        weights, for the DTP family) is left untouched."""
        if self.feedback_optimizer is None:
            return None
        loss = self._feedback_losses(x)
        if loss is None:
            return None
        self._step(loss, [self.forward_optimizer, self.feedback_optimizer])
        return loss.detach()

    def _step(self, loss: Tensor, optimizers: list) -> None:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.synchronize is not None:
            self.synchronize([p for o in optimizers for group in o.param_groups for p in group["params"]])
        for optimizer in optimizers:
            norm = self.clip_norms.get(id(optimizer), 0.0)
            if norm > 0:
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], norm)
            optimizer.step()

    def forward_step(self, x: Tensor, y: Tensor) -> StepResult:
        """One step of the forward optimizer alone (no feedback training)."""
        return self.train_step(x, y, feedback_iterations=0)

    def train_step(self, x: Tensor, y: Tensor, feedback_iterations: int | None = None) -> StepResult:
        iterations = self.feedback_iterations if feedback_iterations is None else feedback_iterations
        if self.feedback_optimizer is None:
            iterations = 0
        for _ in range(iterations - 1):
            self.feedback_step(x)
        record, result, feedback_loss = self._losses(x, y, iterations > 0)
        total = result.loss if feedback_loss is None else result.loss + feedback_loss
        # Rules may also put decoder terms into result.loss (bengio2014); an
        # optimizer whose parameters got no gradient leaves them untouched.
        self._step(total, [o for o in (self.forward_optimizer, self.feedback_optimizer)
                           if o is not None])
        if feedback_loss is not None:
            feedback_loss = feedback_loss.detach()
        return StepResult(result.output_loss.detach(), self.rule.train_scores(record, result, y),
                          feedback_loss)

    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "forward_optimizer": self.forward_optimizer.state_dict(),
            "feedback_optimizer": (self.feedback_optimizer.state_dict()
                                   if self.feedback_optimizer is not None else None),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.forward_optimizer.load_state_dict(state["forward_optimizer"])
        if self.feedback_optimizer is not None and state.get("feedback_optimizer") is not None:
            self.feedback_optimizer.load_state_dict(state["feedback_optimizer"])
