"""Back-propagation: the baseline every other rule is compared with."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.objectives import output_loss
from ..core.rule import ForwardLoss, ForwardRecord, Rule

__all__ = ["BackProp"]


@dataclass
class BackProp(Rule):
    """Back-propagation of the cross-entropy through the whole chain."""

    name: str = "bp"
    contract_exemptions = {"feedback": "back-prop has no feedback maps to train",
                           "targets": "back-prop carries gradients down, not targets"}

    @property
    def local(self) -> bool:
        return False

    def record(self, net, x):
        hs, h = [x], x
        for layer in net.layers:
            h = layer(h)
            hs.append(h)
        return ForwardRecord([t.detach() for t in hs], hs[1:], h, net.output(h))

    def forward_loss(self, net, record, y):
        loss = output_loss(record.logits, y)
        return ForwardLoss(loss, loss)
