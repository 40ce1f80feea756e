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
:func:`settings.setting` and its capabilities as class attributes, among
them ``network_kinds``, the kinds of network it trains: a rule never builds
a network, it checks the one it is given (``check_network``) and, where its
settings shape the feedback maps a network is built with, says so as data
(``network_options``). The contract tests read ``network_kinds`` and
``contract_exemptions`` (case → reason) and nothing else to leave a case
out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .diagnostics import layer_diagnostics
from .networks import Network
from .objectives import Scores, output_scores
from .records import ForwardRecord, Record

Tensor = torch.Tensor

__all__ = ["Record", "ForwardRecord", "ForwardLoss", "Rule", "Scores"]


@dataclass
class ForwardLoss:
    loss: Tensor                     # its gradient is the forward-weight update
    output_loss: Tensor              # the rule's output loss (cross-entropy, reconstruction error)
    targets: list[Tensor] | None = None   # ĥ_l for every layer in net.layers order, where the rule has them


class Rule:
    """Base class of all rules; subclasses override the three methods."""

    name = "rule"
    network_kinds: ClassVar[tuple[str, ...]] = ("chain", "recurrent", "tree")  # the kinds of network it trains
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

    def network_options(self, kind: str) -> dict:
        """Options of the network of ``kind`` this rule is to train, where its
        settings shape it (the form of the proposed feedback maps, a top
        auto-encoder's width): read by the network's builder."""
        return {}

    def learns_real_targets(self, kind: str) -> bool:
        """Whether this rule trains a network of ``kind`` on real targets (regression)."""
        return self.handles_regression

    def check_network(self, net: Network) -> None:
        """Raise ValueError if this rule cannot train ``net`` (called before any work)."""
        kind = getattr(net, "kind", None)
        if kind not in self.network_kinds:
            raise ValueError(f"rule {self.name!r} trains networks of the kind(s) {', '.join(self.network_kinds)}; "
                             f"this one is {'a ' + kind if kind else 'no target-propagation network'}"
                             + ("" if kind else " (targetprop.wrap turns an nn.Sequential into one)"))

    def record(self, net: Network, x: Tensor) -> ForwardRecord:
        """The forward pass, every layer's input detached (``net.local_pass``)."""
        return net.local_pass(x)

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

    def epoch_images(self, net: Network, x: Tensor) -> dict[str, Tensor]:
        """Inputs the rule makes at an epoch's end for a person to look at
        (rows of input features, logged as image grids by ``log=tensorboard``):
        none by default; ``x`` is the probe batch."""
        return {}

    def record_diagnostics(self, net: Network, record, y: Tensor) -> dict[str, float]:
        """Rule-specific figures from the probe batch's record (none by default)."""
        return {}
