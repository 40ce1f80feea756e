"""Back-propagation: the baseline every other rule is compared with."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.objectives import output_loss
from ..core.rule import ForwardLoss, ForwardRecord, Rule
from ..core.settings import check, setting

__all__ = ["BackProp"]


@dataclass(kw_only=True)
class BackProp(Rule):
    """Back-propagation of the output loss through the whole chain; on a
    recurrent net, back-propagation through time (BPTT), truncated with
    ``truncation`` = K to the last K steps: s_{T−K} enters them as a constant."""

    name: str = "bp"
    handles_regression = True
    truncation: int = setting(0, "recurrent nets: back-propagate through the last K steps only "
                              "(truncated BPTT; 0: every step)")
    contract_exemptions = {"feedback": "back-prop has no feedback maps to train",
                           "targets": "back-prop carries gradients down, not targets"}

    def __post_init__(self) -> None:
        check(self)
        if self.truncation < 0:
            raise ValueError("setting 'truncation' must be >= 0")

    @property
    def local(self) -> bool:
        return False

    def check_network(self, net) -> None:
        super().check_network(net)
        if self.truncation and net.kind != "recurrent":
            raise ValueError("setting 'truncation' truncates back-propagation through time: it needs a "
                             "recurrent net (--arch rnn:WIDTH)")
        if self.truncation and net.every_state:
            raise ValueError("setting 'truncation' cuts BPTT of the last step's target K steps back; with a "
                             "target at every step use truncation=0")

    def record(self, net, x):
        h = net.as_input(x)
        hs, layers = [h], net.unrolled(x)
        cut = len(layers) - self.truncation if self.truncation else None
        for l, layer in enumerate(layers):
            h = layer(h.detach() if l == cut else h)
            hs.append(h)
        top = net.read(hs[1:])
        return ForwardRecord([t.detach() for t in hs], hs[1:], top, net.read_out(top), layers)

    def forward_loss(self, net, record, y):
        loss = output_loss(record.logits, y)
        return ForwardLoss(loss, loss)
