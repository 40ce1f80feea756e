"""Deep generative stacks of auto-encoders (Bengio 2014 §2, §4, §7).

One chain of layer-wise auto-encoders (f_l, g_l) per continuous modality,
x_m → h_1 → … → h_{L-1}, and one top level over the joined top codes
(:mod:`targetprop.tops`). A label modality has no chain: its code is the
one-hot vector itself (§3.1, §4). Three ready set-ups (``modalities``):

* ``image``: one modality, the whole input;
* ``halves``: the first and second half of the features (for row-major
  images, the upper and the lower half), one chain each;
* ``image+label``: the image and its label; classification is the
  completion of the missing label by Algorithm 6.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...core.discrete import check_continuous
from ...core.layers import TPLayer, make_activation
from ...core.networks import flat_features
from ...autoencoders.sampling import decode_down
from .tops import Top, make_top

Tensor = torch.Tensor

__all__ = ["MODALITIES", "PARTS", "GenerativeStack", "build_stack"]

MODALITIES = ("image", "halves", "image+label")
# What ``complete`` can hide, per set-up: the modality's index among all of them.
PARTS = {"halves": {"upper": 0, "lower": 1}, "image+label": {"image": 0, "label": 1}}


class GenerativeStack(nn.Module):
    """Chains of :class:`TPLayer` (``widths`` = h_1..h_{L-1}, the same for
    every chain; g_1 is linear back to the input) under a top level of kind
    ``top`` (see :func:`tops.make_top`; ``top_width`` is its code h_L).

    With ``learned_noise`` (Algorithm 1) every hidden unit gets a learned
    noise scale σ_l,j (``log_noise``) and the input a learned per-feature
    variance of P(x | h) (``log_variance``)."""

    kind = "stack"

    def __init__(self, in_features: int, widths: list[int], num_classes: int, *,
                 modalities: str = "image", top: str = "dae", top_width: int = 256,
                 activation: str = "tanh", hidden: int = 0, top_hidden: int = 0,
                 top_sigma: float = 0.0, modality_hide: float = 0.67, walk_back: int = 1,
                 top_criterion: str = "reconstruction", learned_noise: bool = False):
        super().__init__()
        if modalities not in MODALITIES:
            raise ValueError(f"unknown modalities {modalities!r}; choose one of: {', '.join(MODALITIES)}")
        if not widths:
            raise ValueError("a generative stack needs at least one hidden layer")
        if modalities == "halves" and in_features < 2:
            raise ValueError("halves needs at least two input features")
        make_activation(activation)
        self.modalities, self.in_features, self.num_classes = modalities, in_features, num_classes
        half = in_features // 2
        self.sizes = [half, in_features - half] if modalities == "halves" else [in_features]
        self.chains = nn.ModuleList(self._chain(size, widths, activation, hidden) for size in self.sizes)
        # the top code joins every chain's h_{L-1} and, for image+label, the one-hot label
        self.code_widths = [widths[-1]] * len(self.sizes) + [num_classes] * self.labelled
        categorical = [False] * len(self.sizes) + [True] * self.labelled
        self.top: Top = make_top(top, self.code_widths, categorical, top_width, activation, top_hidden,
                                 top_sigma, modality_hide, walk_back, top_criterion)
        self.log_noise = (nn.ParameterList(nn.Parameter(torch.full((w,), -2.0)) for w in widths * len(self.sizes))
                          if learned_noise else None)
        self.log_variance = nn.Parameter(torch.full((in_features,), -3.0)) if learned_noise else None

    @staticmethod
    def _chain(in_features: int, widths: list[int], activation: str, hidden: int) -> nn.ModuleList:
        sizes = [in_features, *widths]
        return nn.ModuleList(TPLayer(sizes[i], sizes[i + 1], activation, activation if i else "linear",
                                     hidden=hidden) for i in range(len(widths)))

    @property
    def layers(self) -> list[TPLayer]:
        """Every layer, chain after chain (the order of targets and records)."""
        return [layer for chain in self.chains for layer in chain]

    @property
    def labelled(self) -> bool:
        return self.modalities == "image+label"

    def split(self, x: Tensor) -> list[Tensor]:
        """The input of each chain (of the flattened features)."""
        return list(x.flatten(1).split(self.sizes, dim=1))

    def encode(self, x: Tensor) -> list[list[Tensor]]:
        """Noise-free h_0..h_{L-1} of every chain."""
        out = []
        for chain, h in zip(self.chains, self.split(x)):
            hs = [h]
            for layer in chain:
                hs.append(layer(hs[-1]))
            out.append(hs)
        return out

    def join(self, codes: list[Tensor], y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The top code h = (codes of every chain, one-hot label) and which
        modalities each row knows, (n, M) bool; y = −1 or None: label missing."""
        n = codes[0].shape[0]
        known = torch.ones(n, len(self.code_widths), dtype=torch.bool, device=codes[0].device)
        if self.labelled:
            if y is None:
                y = torch.full((n,), -1, dtype=torch.long, device=codes[0].device)
            known[:, -1] = y >= 0
            one_hot = F.one_hot(y.clamp_min(0), self.num_classes).to(codes[0].dtype)
            codes = [*codes, one_hot * known[:, -1:].to(one_hot.dtype)]
        return torch.cat(codes, dim=1), known

    def decode(self, h: Tensor) -> Tensor:
        """Top code → data space: each chain's code decoded down by
        h_{l-1} = g_l(h_l) (Algorithm 3, second part), the halves joined."""
        parts = h.split(self.code_widths, dim=1)
        return torch.cat([decode_down(part, [layer.feedback for layer in chain])
                          for part, chain in zip(parts, self.chains)], dim=1)

    def label_probabilities(self, h: Tensor) -> Tensor:
        return h[:, -self.num_classes:]

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The noise-free deep auto-encoder x → h_{L-1} → x̂ (no top level)."""
        return self.decode(self.join([hs[-1] for hs in self.encode(x)])[0])

    @torch.no_grad()
    def complete(self, x: Tensor, hide: str, steps: int = 10, noise: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        """Algorithm 6 with the modality ``hide`` missing: returns the top
        code with it filled in (``decode`` maps it to data space; for a
        label, ``label_probabilities`` reads it off)."""
        parts = PARTS.get(self.modalities, {})
        if hide not in parts:
            raise ValueError(f"a stack with modalities={self.modalities} can hide: {', '.join(parts) or 'nothing'}")
        if not hasattr(self.top, "complete"):
            raise ValueError("completion needs a denoising top (top_prior=dae)")
        codes = [hs[-1] for hs in self.encode(x)]
        h, present = self.join(codes)
        present[:, parts[hide]] = False
        return self.top.complete(h, present, steps, noise, generator)

    def forward(self, x: Tensor) -> Tensor:
        """``image+label``: log-probabilities of the label completed by
        Algorithm 6 (the classifier's logits); otherwise the reconstruction."""
        if self.labelled:
            return self.label_probabilities(self.complete(x, "label")).clamp_min(1e-12).log()
        return self.reconstruct(x)

    @torch.no_grad()
    def sample(self, n: int, start: Tensor | None = None, steps: int = 1,
               generator: torch.Generator | None = None) -> list[Tensor]:
        """Generated inputs, one batch per state of the top's chain (the last
        is the sample; analytic tops give a single state)."""
        return [self.decode(h) for h in self.top.sample(n, start, steps, generator)]

    def layer_forward_parameters(self) -> list[nn.Parameter]:
        """The encoders f_l of every chain."""
        return [p for layer in self.layers for p in layer.forward_parameters()]

    def forward_parameters(self) -> list[nn.Parameter]:
        """Encoders f_l, the top level, and the learned noise scales."""
        noise = list(self.log_noise) if self.log_noise is not None else []
        return self.layer_forward_parameters() + list(self.top.parameters()) + noise

    def feedback_parameters(self) -> list[nn.Parameter]:
        """Decoders g_l (and the variance of P(x | h))."""
        extra = [self.log_variance] if self.log_variance is not None else []
        return [p for layer in self.layers for p in layer.feedback_parameters()] + extra


def build_stack(spec, input_shape, num_outputs: int, activation: str = "tanh", dropout: float = 0.0,
                layer_hidden: int = 0, **stack) -> GenerativeStack:
    """The stack of an ``mlp:W1-W2-...`` spec (h_1..h_{L-1} of every chain)
    on flat features; ``stack``: the generative rule's options (modalities,
    top, ...)."""
    check_continuous(activation, "generative stacks")
    if dropout:
        raise ValueError("generative stacks are regularised by their corruption: set dropout=0")
    return GenerativeStack(flat_features(input_shape), spec.arguments["widths"], num_outputs,
                           activation=activation, hidden=layer_hidden, **stack)
