"""What every training rule is: the base class, the record of a forward pass
and the result of a rule's forward loss.

A rule answers, for one batch:

* ``record(net, x)``: the forward pass, keeping what the rule needs;
* ``forward_loss(net, record, y)``: the loss whose gradient is the rule's
  update of the forward weights (and its targets ĥ_l, where it has them);
* ``feedback_loss(net, record, targets)``: the loss that trains the feedback
  maps g_l;

and it owns what is reported about it: ``train_scores`` (the training
columns), ``evaluate`` (the validation and test columns) and ``diagnostics``
(per-epoch figures on a probe batch). The trainer sums and prints whatever
names these return, so it never asks what kind of rule or network it holds.

A rule declares its settings as dataclass fields made by
:func:`settings.setting` and its capabilities as class attributes; the
contract tests read ``contract_exemptions`` (case → reason) and nothing else
to leave a case out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, Sequence, runtime_checkable

import torch

from .diagnostics import layer_diagnostics
from .networks import Network, build_network
from .objectives import Scores, output_scores
from .recurrent import RecurrentNetwork

Tensor = torch.Tensor

__all__ = ["Record", "ForwardRecord", "SequenceRecord", "ForwardLoss", "Rule", "Scores"]


@runtime_checkable
class Record(Protocol):
    """What every record of a forward pass answers, whatever the network:
    ``x``, the input; ``pairs()``, (h_{l-1}, h_l) detached for each layer in
    ``net.layers`` order; ``outputs``, the same h_l with a graph back to each
    layer's parameters; ``logits``, the prediction where the network makes one."""

    outputs: list[Tensor]
    logits: Tensor | None

    @property
    def x(self) -> Tensor: ...

    def pairs(self) -> list[tuple[Tensor, Tensor]]: ...


@dataclass
class ForwardRecord:
    """One forward pass through a chain. ``hs`` holds detached h_0..h_L;
    ``outputs`` holds h_1..h_L again with a graph back to each layer's own
    input (detached, for local rules); ``top`` is h_L as a leaf, so
    ∂loss/∂h_L can be read off (a recurrent net whose read-out reads every
    state: s_1..s_T stacked, (T, N, W)); ``logits`` hangs from ``top`` (local rules)
    or from the whole chain (back-prop); ``layers`` are the layers the batch
    went through (``net.unrolled(x)``: a recurrent net's time steps).

    A :class:`Record`."""
    hs: list[Tensor]
    outputs: list[Tensor]
    top: Tensor
    logits: Tensor | None
    layers: Sequence = ()

    @property
    def x(self) -> Tensor:
        return self.hs[0]

    def pairs(self) -> list[tuple[Tensor, Tensor]]:
        return list(zip(self.hs[:-1], self.hs[1:]))


@dataclass
class SequenceRecord(ForwardRecord):
    """A :class:`ForwardRecord` of a recurrent net's T steps that also keeps
    them stacked: ``states`` s_1..s_T as (T, N, W), of which ``hs[1:]`` are
    views, and ``stacked_outputs``, (T·N, W), of which ``outputs`` are views,
    so that a rule can treat all steps in one operation."""
    states: Tensor | None = None
    stacked_outputs: Tensor | None = None


@dataclass
class ForwardLoss:
    loss: Tensor                     # its gradient is the forward-weight update
    output_loss: Tensor              # the rule's output loss (cross-entropy, reconstruction error)
    targets: list[Tensor] | None = None   # ĥ_l for every layer in net.layers order, where the rule has them


class Rule:
    """Base class of all rules; subclasses override the three methods, and
    ``build_network`` when they need another architecture."""

    name = "rule"
    uses_feedback: ClassVar[bool] = False       # has feedback maps g_l (and a feedback optimizer)
    separate_feedback: ClassVar[bool] = True    # with uses_feedback: trains them by its own feedback_loss,
                                                # so feedback steps can be scheduled apart
    handles_unlabelled: ClassVar[bool] = False  # batches may hold examples with y = -1
    handles_regression: ClassVar[bool] = False  # learns real targets (y float), not only class labels
    standardize_inputs: ClassVar[bool] = True   # default of the run's ``standardize``
    # defaults that replace the declared ones when a run trains on unlabelled examples
    semi_supervised_defaults: ClassVar[dict] = {}
    # contract cases this rule is exempt from, with the reason (tests/test_contract.py)
    contract_exemptions: ClassVar[dict[str, str]] = {}

    @property
    def local(self) -> bool:
        """Whether no gradient crosses a layer boundary (checked by the contract)."""
        return True

    def build_network(self, arch: str, in_features: int, num_classes: int, activation: str = "tanh",
                      dropout: float = 0.0, hidden: int = 0) -> Network:
        return build_network(arch, in_features, num_classes, activation, dropout, hidden)

    def learns_real_targets(self, arch: str) -> bool:
        """Whether this rule trains ``arch`` on real targets (regression)."""
        return self.handles_regression

    def check_network(self, net: Network) -> None:
        """Raise ValueError if this rule cannot train ``net`` (called before any work)."""

    def record(self, net: Network, x: Tensor) -> ForwardRecord:
        if isinstance(net, RecurrentNetwork):  # its steps share one cell: their outputs come in one call
            layers, states, outputs = net.local_pass(x)
            top = net.read(states).detach().requires_grad_()
            return SequenceRecord([x, *states], list(outputs.split(len(x))), top, net.read_out(top), layers,
                                  states=states, stacked_outputs=outputs)
        hs, outputs, below, layers = [x], [], x.detach(), net.unrolled(x)
        for layer in layers:  # each layer's input detached: its graph stays local
            outputs.append(layer(below))
            below = outputs[-1].detach()
            hs.append(below)
        top = hs[-1].detach().requires_grad_()  # a leaf of its own: hs stays graph-free
        return ForwardRecord(hs, outputs, top, net.output(top), layers)

    def feedback_loss(self, net: Network, record, targets: list[Tensor] | None = None) -> Tensor | None:
        return None

    def forward_loss(self, net: Network, record, y: Tensor) -> ForwardLoss:
        raise NotImplementedError

    # -- what is reported ----------------------------------------------------

    def train_scores(self, record, result: ForwardLoss, y: Tensor) -> Scores:
        """Sums for the training columns of one step (``train_loss``, ``train_acc``)."""
        return output_scores(record.logits.detach(), y, result.output_loss)

    @torch.no_grad()
    def evaluate(self, net: Network, x: Tensor, y: Tensor) -> Scores:
        """Sums for the validation and test columns of one batch (``val_loss``, ``val_acc``, ...)."""
        return output_scores(net(x), y)

    def diagnostics(self, net: Network, x: Tensor, y: Tensor) -> dict[str, float]:
        """Per-epoch figures on the probe batch: angles to back-prop,
        reconstruction errors and target steps per layer
        (:func:`diagnostics.layer_diagnostics`), and the rule's own."""
        return layer_diagnostics(net, self, x, y)

    def record_diagnostics(self, net: Network, record, y: Tensor) -> dict[str, float]:
        """Rule-specific figures from the probe batch's record (none by default)."""
        return {}
