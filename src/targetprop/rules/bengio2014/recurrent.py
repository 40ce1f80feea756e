"""Bengio (2014) §5: a recurrent net trained by a backward recurrent net
without inputs, its short loops and its long loops.

The forward net is the Elman net of ``rnn:WIDTH`` read as §5 reads it:

    h_t = U x_t + b                         the encoder's code of x_t
    s_t = f(s_{t−1}, h_t) = act(W s_{t−1} + h_t),   s_0 = 0
    g(s_t) = (s̃_{t−1}, h̃_t) = (V s_t + c, Q s_t + e)   the backward net, no input

(the paper writes s_t = f(s_{t−1}, h_{t−1}); the code that enters step t
is called h_t here). :class:`Section5Network` holds the maps;
:func:`long_loop_targets` and :class:`ShortLoopMoments` are the pure pieces
the rule (:class:`rule.Bengio2014` on such a net) composes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...autoencoders.corruption import Corruption
from ...core import targets as tg
from ...core.delta import activation_derivative
from ...core.objectives import output_loss
from ...core.discrete import check_continuous
from ...core.recurrent import RecurrentNetwork, sequence_shape_of
from ...core.rule import ForwardLoss, ForwardRecord
from ...core.updates import local_target_loss

Tensor = torch.Tensor

__all__ = ["Section5", "Section5Network", "Section5Record", "ShortLoopMoments", "build_section5", "long_loop_targets"]


class Section5Network(RecurrentNetwork):
    """``rnn:WIDTH`` for ``bengio2014``: the Elman net whose backward net g
    has no input and reconstructs both halves of a step's input, the past
    state and the code, (s̃_{t−1}, h̃_t) = (V s_t + c, Q s_t + e)."""

    kind = "section5"

    def __init__(self, sequence_shape: tuple[int, int], width: int, num_outputs: int, activation: str = "tanh"):
        super().__init__(sequence_shape, width, num_outputs, activation, feedback_input=False, cell="rnn")
        self.back_code = nn.Linear(width, width)  # Q, e
        nn.init.zeros_(self.back_code.bias)

    @property
    def width(self) -> int:
        return self.cell.recurrent.weight.shape[0]

    def codes(self, inputs: Tensor) -> Tensor:
        """h_t = U x_t + b (the cell's drive) for steps of shape (T, N, F), in one product."""
        return self.cell.drive(inputs)

    def transition(self, s: Tensor | None, code: Tensor) -> Tensor:
        """f(s_{t−1}, h_t); ``s`` None is s_0 = 0."""
        return self.cell.advance(s, code)

    def backward_weight(self) -> tuple[Tensor, Tensor]:
        """g as one affine map: ([V; Q], [c; e]), so g(s) = F.linear(s, *backward_weight())."""
        cell = self.cell.back
        return (torch.cat([cell.weight, self.back_code.weight]), torch.cat([cell.bias, self.back_code.bias]))

    def reconstruct(self, s: Tensor) -> Tensor:
        """g(s_t) = [s̃_{t−1}, h̃_t] along the last dimension."""
        return F.linear(s, *self.backward_weight())

    def feedback_parameters(self) -> list[nn.Parameter]:
        return [*super().feedback_parameters(), *self.back_code.parameters()]


def build_section5(spec, input_shape, num_outputs: int, activation: str = "tanh") -> Section5Network:
    """§5's net of an ``rnn:WIDTH`` spec."""
    check_continuous(activation, "bengio2014")
    return Section5Network(sequence_shape_of(input_shape), spec.arguments["width"], num_outputs, activation)


@dataclass
class ShortLoopMoments:
    """The short loops' loss Σ_t ½‖Θ a_t − b_t‖² / N (Θ = [V c; Q e],
    a_t = [corrupt(s_t); 1], b_t = [s_{t−1}; h_t]) kept as sums accumulated
    forward in time, A = Σ a_tᵀa_t, C = Σ a_tᵀb_t, B = Σ‖b_t‖², so that

        Σ_t ‖Θ a_t − b_t‖² = tr(Θ A Θᵀ) − 2 tr(Θ C) + B

    and its gradient in Θ are exact while the memory stays that of Θ,
    whatever T: §5's "ingredients for the gradient updates accumulated
    forward in time", for the streaming case."""
    inputs: Tensor | None = None     # A, (W+1, W+1)
    cross: Tensor | None = None      # C, (W+1, 2W)
    targets: Tensor | None = None    # B, ()
    count: int = 0                   # N, the batch size

    def add(self, corrupted_state: Tensor, below: Tensor) -> None:
        a = F.pad(corrupted_state, (0, 1), value=1.0)
        terms = (a.T @ a, a.T @ below, below.pow(2).sum())
        if self.inputs is None:
            self.inputs, self.cross, self.targets = terms
        else:
            self.inputs += terms[0]
            self.cross += terms[1]
            self.targets += terms[2]
        self.count = len(below)

    def loss(self, weight: Tensor, bias: Tensor) -> Tensor:
        theta = torch.cat([weight, bias.unsqueeze(1)], dim=1)
        quadratic = (theta @ self.inputs * theta).sum() - 2 * (theta * self.cross.T).sum() + self.targets
        return 0.5 * quadratic / self.count


@dataclass
class Section5Record(ForwardRecord):
    """A forward pass through a :class:`Section5Network`: ``hs``, ``outputs``
    and ``layers`` as for any recurrent net (``hs[0]`` is x, or, streaming,
    the state before the stored window), plus the codes h_t of the stored
    steps with their graph to the encoder (``codes``) and detached
    (``code_values``), and the short loops of the steps before the window
    as :class:`ShortLoopMoments` (streaming only)."""
    codes: list[Tensor] = field(default_factory=list)
    code_values: list[Tensor] = field(default_factory=list)
    moments: ShortLoopMoments | None = None


def long_loop_targets(reconstruct: Callable[[Tensor], Tensor], propagate, states: list[Tensor],
                      codes: list[Tensor], top: Tensor, first_state: Tensor | None = None,
                      gate: Callable[[Tensor], Tensor] | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """§5's long loop from ŝ_T = ``top``: for t = T..1,
    (ŝ_{t−1}, ĥ_t) = P(g, [s_{t−1}; h_t], s_t, ŝ_t), P a propagation rule of
    :mod:`core.targets` (``tp``: g(ŝ_t), the paper's; ``difference``:
    [s_{t−1}; h_t] + g(ŝ_t) − g(s_t)); with ``gate``, ŝ_t's step is first
    multiplied by act′ read from s_t.

    ``states`` are s_1..s_T, ``codes`` h_1..h_T (both detached),
    ``first_state`` s_0 (None: zero). Returns [ŝ_1..ŝ_T] and [ĥ_1..ĥ_T]."""
    width = top.shape[-1]
    state_targets, code_targets = [top], []
    with torch.no_grad():
        for t in range(len(states) - 1, -1, -1):
            s, s_hat = states[t], state_targets[-1]
            if gate is not None:
                s_hat = torch.addcmul(s, gate(s), s_hat - s)
            previous = states[t - 1] if t > 0 else first_state if first_state is not None else torch.zeros_like(s)
            below_hat = propagate(reconstruct, torch.cat([previous, codes[t]], dim=-1), s, s_hat)
            s_prev_hat, code_hat = below_hat.split(width, dim=-1)
            code_targets.append(code_hat)
            if t > 0:
                state_targets.append(s_prev_hat)
    return state_targets[::-1], code_targets[::-1]


@dataclass
class Section5:
    """§5's recipe on a :class:`Section5Network`, one batch:

    1. short loops (``feedback_loss``): (s_{t−1}, h_t) is a target for
       g(corrupt(s_t)) (updates g); with ``recirculation_weight``, s_t is a
       target for f(s̃_{t−1}, h_t) (updates W);
    2. the label enters at the top: ŝ_T = s_T − η ∂ℓ/∂s_T, ℓ the read-out's
       loss (Eq. 17's discriminant step, P(y|s_T) the read-out);
    3. long loops (:func:`long_loop_targets`) from ŝ_T down to t = 1 and,
       with ``stride`` k > 0, from every k-th earlier state ŝ_{T'} = s_{T'}
       as well (no label there), each step's targets averaged over the loops
       that reach it;
    4. ŝ_t is a target for s_t (updates W), ĥ_t a target for h_t (updates
       the encoder U, b; ``encoder_credit="code"``), and (s_{t−1}, h_t) a
       target for g(corrupt(ŝ_t)) (updates g, ``feedback_loss`` given the
       targets). By default (``"step"``) ŝ_t trains the encoder instead,
       through the one step between them (back-prop inside a layer, §6):
       a linear Q that reads h_t back from s_t alone cannot tell it from
       W s_{t−1}, and its ĥ_t moved U 83–89° away from BPTT's gradient on
       row-by-row Fashion-MNIST (README); ``"both"`` uses both.

    ``window`` K > 0 is the streaming case: the forward pass keeps only the
    last K steps; the short loops of the steps before them are accumulated
    forward in time (:class:`ShortLoopMoments`), and the long loop runs
    back from the current state through the K stored steps only, so memory
    does not grow with T and credit reaches K steps back."""
    corruption: Corruption
    propagation: str = "difference"
    target_step: float = 0.1
    gating: bool = True
    stride: int = 0
    window: int = 0
    recirculation_weight: float = 0.0
    encoder_credit: str = "step"

    def record(self, net: Section5Network, x: Tensor) -> Section5Record:
        inputs = net.inputs(x)
        start = max(len(inputs) - self.window, 0) if self.window else 0
        s, moments = None, None
        if start:
            moments = ShortLoopMoments()
            with torch.no_grad():
                for x_t in inputs[:start]:
                    code = net.cell.input(x_t)
                    state = net.transition(s, code)
                    moments.add(self.corruption(state), torch.cat([_zero_if_none(s, state), code], dim=-1))
                    s = state
        codes = net.codes(inputs[start:])
        code_values = codes.detach()
        hs, outputs = [x if s is None else s], []
        through_step = self.encoder_credit != "code"
        for code, value in zip(codes, code_values):
            out = net.transition(s, code if through_step else value)   # s detached: no gradient crosses a step
            outputs.append(out)
            s = out.detach()
            hs.append(s)
        top = s.detach().requires_grad_()
        return Section5Record(hs, outputs, top, net.read_out(top), net.unrolled(x)[start:],
                              codes=list(codes.unbind()), code_values=list(code_values.unbind()), moments=moments)

    def _first_state(self, record: Section5Record) -> Tensor | None:
        """s before the stored steps: None (s_0 = 0) unless streaming cut the past off."""
        return None if record.moments is None else record.hs[0]

    def forward_loss(self, net: Section5Network, record: Section5Record, y: Tensor) -> ForwardLoss:
        per_example = output_loss(record.logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(per_example, record.top, retain_graph=True)
        top = tg.gradient_top_target(record.hs[-1], grad, self.target_step)
        targets, code_targets = self.long_loops(net, record, top)
        loss = per_example / len(y) + local_target_loss(record.outputs, targets)
        if self.encoder_credit != "step":
            loss = loss + local_target_loss(record.codes, code_targets)
        return ForwardLoss(loss, (per_example / len(y)).detach(), targets)

    def long_loops(self, net: Section5Network, record: Section5Record, top: Tensor) -> tuple[list, list]:
        """Step 3: ([ŝ_t], [ĥ_t]) for the stored steps, averaged over the long loops."""
        weight, bias = net.backward_weight()
        if self.propagation == "difference":  # g affine: g(ŝ) − g(s) = [V; Q](ŝ − s), one product
            reconstruct, propagate = (lambda d: F.linear(d, weight)), tg.linear_difference_propagate
        else:
            reconstruct, propagate = (lambda s: F.linear(s, weight, bias)), tg.PROPAGATION_RULES[self.propagation]
        gate = (lambda s: activation_derivative(net.cell.act, s)) if self.gating else None
        states, codes, first = record.hs[1:], record.code_values, self._first_state(record)
        loop = lambda end, start: long_loop_targets(reconstruct, propagate, states[:end], codes[:end],  # noqa: E731
                                                    start, first, gate)
        if not self.stride:
            return loop(len(states), top)
        state_sums, code_sums = [torch.zeros_like(s) for s in states], [torch.zeros_like(h) for h in codes]
        counts = [0] * len(states)
        for end in range(len(states), 0, -self.stride):
            state_targets, code_targets = loop(end, top if end == len(states) else states[end - 1])
            for t in range(end):
                state_sums[t] += state_targets[t]
                code_sums[t] += code_targets[t]
                counts[t] += 1
        return [s / c for s, c in zip(state_sums, counts)], [h / c for h, c in zip(code_sums, counts)]

    def record_diagnostics(self, net: Section5Network, record: Section5Record, y: Tensor) -> dict[str, float]:
        return {}

    def feedback_loss(self, net: Section5Network, record: Section5Record,
                      targets: list[Tensor] | None = None) -> Tensor:
        """Step 1 over every step (the streamed ones from their moments) and,
        given the targets, step 4's decoder terms; each term ½‖·‖² summed
        over units and steps, averaged over the batch."""
        weight, bias = net.backward_weight()
        states = torch.stack(record.hs[1:])
        first = self._first_state(record)
        previous = torch.cat([(torch.zeros_like(states[:1]) if first is None else first.unsqueeze(0)),
                              states[:-1]])
        below = torch.cat([previous, torch.stack(record.code_values)], dim=-1)
        sigma = self.corruption.scale(states)  # measured on each step's batch, reused for its targets
        if isinstance(sigma, Tensor):
            sigma = sigma.view(-1, 1, 1)
        n = states.shape[1]

        def decoded_error(start: Tensor) -> Tensor:  # ½‖g(corrupt(start)) − [s_{t−1}; h_t]‖², and g's output
            reconstruction = F.linear(self.corruption(start, sigma=sigma), weight, bias)
            return 0.5 * F.mse_loss(reconstruction, below, reduction="sum") / n, reconstruction

        loss, short = decoded_error(states)
        if targets is not None:
            loss = loss + decoded_error(torch.stack(targets))[0]
        if self.recirculation_weight:
            recirculated = net.transition(short[..., :net.width].detach(), torch.stack(record.code_values))
            loss = loss + self.recirculation_weight * 0.5 * F.mse_loss(recirculated, states, reduction="sum") / n
        if record.moments is not None:
            loss = loss + record.moments.loss(weight, bias)
        return loss


def _zero_if_none(s: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if s is None else s
