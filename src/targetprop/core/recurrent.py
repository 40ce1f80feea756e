"""Recurrent nets as chains unrolled in time (Bengio 2014 §5): each time step
is a layer whose weights every step shares.

The forward transition and its learned backward map are

    f:  s_t = act(W s_{t−1} + U x_t + b),  s_0 = 0,
    g:  s̃_{t−1} = V s_t + P x_t + c,

g being the one step of §5's backward recurrent net (a net "without inputs"
when ``feedback_input`` is off, P = 0), or, with ``feedback_map``
``activation``, the inverse of Manchev and Spratling (2020) that reads the
step's input through the forward input weights U (not trained by g's
objective), g: s̃_{t−1} = act(V s_t + U x_t + c); the read-out sees the last state,
logits = R s_T + d, or (``every_state``, for targets at every step) every
state, logits_t = R s_t + d. ``RecurrentNetwork.unrolled(x)`` returns the T steps
of a batch as :class:`TimeStep` layers, so every chain rule sees a chain of
depth T: back-prop through it is back-propagation through time (BPTT), and
the DTP family's targets ŝ_{t−1} = s_{t−1} + g(ŝ_t) − g(s_t) are target
propagation through time (Manchev and Spratling 2020).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .delta import activation_derivative
from .layers import ACTIVATIONS, make_activation
from .networks import SharedCellNetwork
from .records import ForwardRecord

Tensor = torch.Tensor

__all__ = ["RecurrentCell", "ElmanCell", "GRUCell", "CELLS", "TimeStep", "RecurrentNetwork", "sequence_shape_of",
           "stacked_steps"]

def sequence_shape_of(inputs: int | tuple[int, ...]) -> tuple[int, int]:
    """(T, features per step) of the inputs: a sequence's shape, or a grey
    image's (H, W) or (1, H, W) read row by row."""
    if not isinstance(inputs, int) and len(inputs) == 3 and inputs[0] == 1:
        inputs = inputs[1:]
    if isinstance(inputs, int) or len(inputs) != 2:
        raise ValueError(f"a recurrent net reads sequences (steps, features) or grey images row by row; "
                         f"these inputs are {'flat features' if isinstance(inputs, int) else inputs}: use "
                         "a sequence dataset (adding, temporal-order, fashion-mnist-rows, ...)")
    return int(inputs[0]), int(inputs[1])


class RecurrentCell(nn.Module):
    """A transition f shared by every step, and its learned backward map
    g(s_t) = V s_t + P x_t + c (``affine_feedback``), or act(V s_t + U x_t + c)
    with U the forward input weights (``feedback_map="activation"``).
    Subclasses give f: ``step``, ``forward_parameters`` and ``weight_groups``."""

    def __init__(self, features: int, width: int, feedback_input: bool = True, feedback_map: str = "linear"):
        super().__init__()
        if feedback_map not in ("linear", "activation"):
            raise ValueError(f"unknown feedback_map {feedback_map!r}; choose linear or activation")
        self.affine_feedback = feedback_map == "linear"
        self.back = nn.Linear(width, width)                    # V, c
        self.back_input = (nn.Linear(features, width, bias=False)  # P
                           if feedback_input and self.affine_feedback else None)
        nn.init.zeros_(self.back.bias)

    def drive(self, x: Tensor) -> Tensor:
        """The part of a step that reads x_t alone, for any leading shape
        (all T steps of a batch in one product)."""
        raise NotImplementedError

    def advance(self, s: Tensor | None, drive_t: Tensor) -> Tensor:
        """s_t from s_{t−1} (``s`` None: s_0 = 0) and step t's drive."""
        raise NotImplementedError

    def step(self, s: Tensor | None, x_t: Tensor) -> Tensor:
        """s_t from s_{t−1} (``s`` None: s_0 = 0) and x_t."""
        return self.advance(s, self.drive(x_t))

    def known_steps(self, below: Tensor, drives: Tensor, states: Tensor) -> Tensor:
        """f(s_{t−1}, x_t) for steps stacked into one batch, with a graph to the
        cell's weights, when their values ``states`` are already known (from
        a loop without a graph); here computed again by ``advance``."""
        return self.advance(below, drives)

    def reconstruct(self, s: Tensor, x_t: Tensor) -> Tensor:
        """s̃_{t−1} = V s_t + P x_t + c, or act(V s_t + U x_t + c)."""
        out = self.back(s)
        if not self.affine_feedback:
            return self.act(out + F.linear(x_t, self.input_weight().detach()))  # U is f's, trained by f
        return out if self.back_input is None else out + self.back_input(x_t)

    def input_weight(self) -> Tensor:
        """U, the forward map's weights on x_t (an inverse that reads the input shares them)."""
        raise NotImplementedError

    def forward_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def feedback_parameters(self) -> list[nn.Parameter]:
        return [*self.back.parameters(), *([] if self.back_input is None else self.back_input.parameters())]

    def weight_groups(self) -> dict[str, list[nn.Parameter]]:
        """The recurrent and the input weights (biases left out): what the
        angle diagnostics compare with BPTT's, each on its own."""
        raise NotImplementedError

    def weights(self) -> list[nn.Parameter]:
        return [w for group in self.weight_groups().values() for w in group]


class ElmanCell(RecurrentCell):
    """``rnn:``: s_t = act(W s_{t−1} + U x_t + b). W is orthogonal at the
    start (its powers neither grow nor vanish, Saxe et al. 2014) and V is
    its transpose there."""

    def __init__(self, features: int, width: int, activation: str = "tanh", feedback_input: bool = True,
                 feedback_map: str = "linear"):
        super().__init__(features, width, feedback_input, feedback_map)
        self.recurrent = nn.Linear(width, width, bias=False)   # W
        self.input = nn.Linear(features, width)                # U, b
        self.act = make_activation(activation)
        with torch.no_grad():
            nn.init.orthogonal_(self.recurrent.weight)
            self.back.weight.copy_(self.recurrent.weight.T)

    def drive(self, x: Tensor) -> Tensor:
        """U x + b."""
        return self.input(x)

    def input_weight(self) -> Tensor:
        return self.input.weight

    def advance(self, s: Tensor | None, drive_t: Tensor) -> Tensor:
        return self.act(drive_t if s is None else drive_t + self.recurrent(s))

    def known_steps(self, below: Tensor, drives: Tensor, states: Tensor) -> Tensor:
        """The states themselves, with act(W s_{t−1} + drive_t)'s gradient
        written out (``_KnownSteps``): the forward product is not run again."""
        return _KnownSteps.apply(states, below, drives, self.recurrent.weight, self.act)

    def orthogonal_init(self) -> None:
        """W, U and V each a random (semi-)orthogonal matrix, V drawn apart
        from W, the biases zero: Manchev and Spratling's (2020) start."""
        with torch.no_grad():
            for weight in (self.recurrent.weight, self.input.weight, self.back.weight):
                nn.init.orthogonal_(weight)
            for bias in (self.input.bias, self.back.bias):
                bias.zero_()

    def forward_parameters(self) -> list[nn.Parameter]:
        return [*self.recurrent.parameters(), *self.input.parameters()]

    def weight_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"recurrent": [self.recurrent.weight], "input": [self.input.weight]}


class _KnownSteps(torch.autograd.Function):
    """p = act(W s_{t−1} + d_t) for stacked steps whose values p are known:
    the backward pass is act′(p) ⊙ ∂/∂p into the pre-activation, whence
    ∂/∂W = (act′ ⊙ ∂/∂p)ᵀ s_{t−1} in one product and ∂/∂d_t (which goes on
    to U and b through the drives' graph)."""

    @staticmethod
    def forward(ctx, states: Tensor, below: Tensor, drives: Tensor, weight: Tensor, act: nn.Module) -> Tensor:
        ctx.save_for_backward(states, below)
        ctx.act = act
        return states.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        states, below = ctx.saved_tensors
        pre = grad * activation_derivative(ctx.act, states)
        return None, None, pre, pre.t() @ below, None


class GRUCell(RecurrentCell):
    """``gru:``: the gated recurrent unit (Cho et al. 2014), torch's
    ``nn.GRUCell``: r, z = σ(W_r,z s + U_r,z x + b), n = tanh(U_n x + r ⊙
    (W_n s + b_n)), s_t = (1 − z) ⊙ n + z ⊙ s_{t−1}. Its units have no one
    activation, so no rule gates its target steps."""

    def __init__(self, features: int, width: int, activation: str = "tanh", feedback_input: bool = True,
                 feedback_map: str = "linear"):
        if activation != "tanh":
            raise ValueError(f"gru: units are the GRU's own (tanh and sigmoid gates), not {activation!r}")
        if feedback_map != "linear":
            raise ValueError("gru: its inverse is g(s_t) = V s_t + P x_t + c (the GRU has no one input map "
                             "U to share): use feedback_map=linear")
        super().__init__(features, width, feedback_input)
        self.gru = nn.GRUCell(features, width)
        self.act = nn.Identity()

    def drive(self, x: Tensor) -> Tensor:
        """x itself: nn.GRUCell takes its input whole."""
        return x

    def advance(self, s: Tensor | None, drive_t: Tensor) -> Tensor:
        return self.gru(drive_t, s)

    def forward_parameters(self) -> list[nn.Parameter]:
        return list(self.gru.parameters())

    def weight_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"recurrent": [self.gru.weight_hh], "input": [self.gru.weight_ih]}


class TimeStep:
    """Step t of an unrolled batch as a layer of a chain (the protocol of
    :class:`layers.Layer`): f(s_{t−1}) = s_t and g(s_t) = s̃_{t−1} with this
    step's input x_t bound. The first step reads x and starts from s_0 = 0;
    it has no g (x needs no target). ``drive_t``: the cell's drive of x_t,
    when it was computed for all steps at once."""

    drops_input = False
    time_step = True       # one of a loop's steps, which share every map
    feedback_stacks = True  # g is affine: targets and states may go through it stacked

    def __init__(self, cell: RecurrentCell, x_t: Tensor, first: bool, drive_t: Tensor | None = None):
        self.cell, self.x_t, self.first = cell, x_t, first
        self.drive_t = cell.drive(x_t) if drive_t is None else drive_t
        self.g = None if first else self.feedback
        if not cell.affine_feedback:  # act(V s + U x + c): differences go through g itself
            self.feedback_linear = None

    def f(self, h_below: Tensor) -> Tensor:
        return self.cell.advance(None if self.first else h_below, self.drive_t)

    __call__ = fixed_forward = f

    def feedback_linear(self, d: Tensor) -> Tensor:
        """V d: g's linear part, which carries target differences (g(ĥ) − g(h) = V(ĥ − h))."""
        return F.linear(d, self.cell.back.weight)

    def feedback(self, h: Tensor) -> Tensor:
        """g(s_t); a batch of k stacked copies (targets and states in one
        call) reads x_t k times."""
        copies = len(h) // len(self.x_t)
        return self.cell.reconstruct(h, self.x_t if copies == 1 else self.x_t.repeat(copies, 1))

    def forward_parameters(self) -> list[nn.Parameter]:
        return self.cell.forward_parameters()

    def feedback_parameters(self) -> list[nn.Parameter]:
        return [] if self.first else self.cell.feedback_parameters()

    @property
    def feedback_weight(self) -> Tensor:
        """V, the weight of g's linear part, which every step shares."""
        return self.cell.back.weight

    @property
    def activation(self) -> nn.Module:
        return self.cell.act

    def penalty(self, h_below: Tensor) -> None:
        return None

    def weights(self) -> list[nn.Parameter]:
        return self.cell.weights()


def stacked_steps(layers, hs: list[Tensor], states: Tensor | None = None) -> list[tuple]:
    """(layer, h_{l−1}, h_l, count) for each layer of a chain, except that the
    time steps after the first, which share every map and differ only in
    their input, come as one :class:`TimeStep` over their ``count`` batches
    stacked: one product per map instead of one per step. ``states``: the
    states s_1..s_T already stacked, (T, N, W), which the stacked steps then
    read without a copy."""
    steps = [l for l, layer in enumerate(layers) if isinstance(layer, TimeStep) and not layer.first]
    if len(steps) < 2:
        return [(layer, hs[l], hs[l + 1], 1) for l, layer in enumerate(layers)]
    single = [(layer, hs[l], hs[l + 1], 1) for l, layer in enumerate(layers) if l < steps[0]]
    stack = TimeStep(layers[steps[0]].cell, torch.cat([layers[l].x_t for l in steps]), first=False)
    if states is not None and steps == list(range(1, len(states))):
        below, above = states[:-1].flatten(0, 1), states[1:].flatten(0, 1)
    else:
        below, above = torch.cat([hs[l] for l in steps]), torch.cat([hs[l + 1] for l in steps])
    return single + [(stack, below, above, len(steps))]


CELLS = {"rnn": ElmanCell, "gru": GRUCell}


class RecurrentNetwork(SharedCellNetwork):
    """``rnn:WIDTH`` (or ``gru:WIDTH``) on sequences of shape (T, features): the cell unrolled
    over T steps and a linear read-out of s_T, or with ``every_state`` of
    every s_t (logits (N, T, outputs), for a target per step). ``layers``
    holds the cell alone (a net of one layer whose weights every step
    shares); ``unrolled(x)`` gives the T steps of a batch, the chain the
    rules train."""

    kind = "recurrent"

    def __init__(self, sequence_shape: tuple[int, int], width: int, num_outputs: int,
                 activation: str = "tanh", feedback_input: bool = True, cell: str = "rnn",
                 every_state: bool = False, feedback_map: str = "linear"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"{cell}: units take the activations {', '.join(ACTIVATIONS)}, not {activation!r}")
        self.sequence_shape = sequence_shape
        self.cell = CELLS[cell](sequence_shape[1], width, activation, feedback_input, feedback_map)
        self.output = nn.Linear(width, num_outputs)
        self.every_state = every_state

    def read(self, states: Tensor | list[Tensor]) -> Tensor:
        """What the read-out sees of the states s_1..s_T (stacked (T, N, W) or
        a list): s_T, or all of them stacked."""
        if not self.every_state:
            return states[-1]
        return states if isinstance(states, Tensor) else torch.stack(states)

    def read_out(self, read: Tensor) -> Tensor:
        """The logits of what ``read`` returned: (N, outputs) from s_T, or
        (N, T, outputs) from every state."""
        logits = self.output(read)
        return logits.transpose(0, 1) if read.dim() == 3 else logits

    def inputs(self, x: Tensor) -> Tensor:
        """x (N, T·F) flat, or (N, T, F), as (T, N, F): one batch per step."""
        return x.reshape(len(x), *self.sequence_shape).transpose(0, 1)

    def unrolled(self, x: Tensor) -> list[TimeStep]:
        return self._steps(self.inputs(x))[0]

    def _steps(self, inputs: Tensor) -> tuple[list[TimeStep], Tensor]:
        """The T steps of a batch and their drives, (T, N, ·), in one call."""
        drives = self.cell.drive(inputs)
        return [TimeStep(self.cell, x_t, t == 0, drive_t)
                for t, (x_t, drive_t) in enumerate(zip(inputs, drives))], drives

    def local_pass(self, x: Tensor) -> ForwardRecord:
        """The record of a local rule: the states s_1 … s_T, (T, N, W),
        without a graph, and every step's output f(s_{t−1}, x_t) on its
        detached input, (T·N, W), all steps in one call of the cell over T
        stacked batches (the values of a loop over ``layer(h.detach())``,
        with one product per weight instead of T, and no graph through the
        loop); the read-out's input a leaf, the logits from it."""
        layers, drives = self._steps(self.inputs(x))
        with torch.no_grad():
            s, states = None, []
            for layer in layers:
                s = layer.f(s)
                states.append(s)
            run = s.new_empty((len(layers) + 1, *s.shape))  # s_0 = 0, s_1, …, s_T
            run[0].zero_()
            torch.stack(states, out=run[1:])
        outputs = self.cell.known_steps(run[:-1].flatten(0, 1), drives.flatten(0, 1), run[1:].flatten(0, 1))
        states = run[1:]
        top = self.read(states).detach().requires_grad_()
        return ForwardRecord([x, *states], list(outputs.split(len(x))), top, self.read_out(top), layers,
                             states=states, stacked_outputs=outputs)

    def forward(self, x: Tensor) -> Tensor:
        s, states = None, []
        for drive_t in self.cell.drive(self.inputs(x)):
            s = self.cell.advance(s, drive_t)
            states.append(s)
        return self.read_out(self.read(states))

    def orthogonal_init(self) -> None:
        """The Elman cell's :meth:`ElmanCell.orthogonal_init` and a (semi-)orthogonal read-out."""
        self.cell.orthogonal_init()
        with torch.no_grad():
            nn.init.orthogonal_(self.output.weight)
            self.output.bias.zero_()

