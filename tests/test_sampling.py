"""Algorithms 3 and 6 and the walk-back criterion, on maps whose behaviour is
known in closed form."""
from __future__ import annotations

import pytest
import torch

from targetprop.autoencoders.sampling import decode_down, map_complete, top_chain, walk_back_loss


def test_top_chain_and_decoding_down_compose_the_maps():
    h = torch.randn(4, 3)
    states = top_chain(h, lambda t: 2 * t, lambda t: t - 1, lambda t: t + 0.5, steps=3)
    expected, manual = h, []
    for _ in range(3):
        expected = 2 * expected + 0.5 - 1
        manual.append(expected)
    assert len(states) == 3 and all(torch.equal(a, b) for a, b in zip(states, manual))
    decoders = [lambda t: t * 10, lambda t: t + 1]  # g_1, g_2: g_2 runs first
    torch.testing.assert_close(decode_down(h, decoders), (h + 1) * 10)
    with pytest.raises(ValueError, match="at least one step"):
        top_chain(h, lambda t: t, lambda t: t, lambda t: t, steps=0)


def test_walk_back_sums_the_reconstruction_errors_along_the_walk():
    torch.manual_seed(0)
    encoder, decoder = torch.nn.Linear(3, 2).double(), torch.nn.Linear(2, 3).double()
    h = torch.randn(5, 3, dtype=torch.float64)
    shift = lambda t: t + 0.1  # noqa: E731  deterministic "corruption"
    loss = walk_back_loss(h, encoder, decoder, shift, walks=3)
    expected, start = 0.0, h
    for _ in range(3):
        reconstruction = decoder(shift(encoder(start)))
        expected = expected + 0.5 * (reconstruction - h).pow(2).sum() / 5
        start = reconstruction.detach()
    torch.testing.assert_close(loss, expected)
    one = walk_back_loss(h, encoder, decoder, shift, walks=1)
    torch.testing.assert_close(one, 0.5 * (decoder(shift(encoder(h))) - h).pow(2).sum() / 5)


def test_map_completion_keeps_the_observed_part_and_reaches_the_fixed_point():
    """A linear reconstruction that averages the two halves: the missing half
    converges to the observed one, which never moves."""
    h = torch.cat([torch.randn(6, 2), torch.zeros(6, 2)], dim=1)
    observed = torch.tensor([True, True, False, False]).expand(6, 4)
    swap = lambda t: torch.cat([0.5 * (t[:, :2] + t[:, 2:]), 0.5 * (t[:, :2] + t[:, 2:])], 1)  # noqa: E731
    completed = map_complete(h, observed, swap, steps=40)
    assert torch.equal(completed[:, :2], h[:, :2])
    torch.testing.assert_close(completed[:, 2:], h[:, :2], atol=1e-6, rtol=0)
    first_calls = []
    map_complete(h, observed, swap, steps=2, first_reconstruct=lambda t: first_calls.append(1) or swap(t))
    assert first_calls == [1]  # the masked reconstruction serves the first iteration only
