"""The generated long-term-dependency problems: every target is recomputed
here from the sequence itself, by reading it the way the task defines it."""
from __future__ import annotations

import numpy as np
import pytest

from targetprop.running.sequences import TASKS, adding, permutation, temporal_order


@pytest.mark.parametrize("seq_len", [2, 11, 60])
def test_adding_targets_are_the_sum_of_the_marked_values(seq_len):
    x, y = adding(500, seq_len, np.random.default_rng(0))
    assert x.shape == (500, seq_len, 2) and y.shape == (500,)
    markers = x[..., 1]
    assert np.all(markers.sum(1) == 2)
    half = seq_len // 2
    assert np.all(markers[:, :half].sum(1) == 1) and np.all(markers[:, half:].sum(1) == 1)
    np.testing.assert_allclose(y, (x[..., 0] * markers).sum(1), rtol=1e-6)
    assert 0 <= x[..., 0].min() and x[..., 0].max() < 1


def test_adding_baseline_is_one_sixth():
    """Predicting the mean 1 scores Var(U1 + U2) = 1/6 (the usual baseline)."""
    _, y = adding(200_000, 30, np.random.default_rng(1))
    assert abs(np.mean((y - 1) ** 2) - 1 / 6) < 3e-3


@pytest.mark.parametrize("relevant", [2, 3])
@pytest.mark.parametrize("seq_len", [10, 60, 200])
def test_temporal_order_class_is_the_order_of_x_and_y(relevant, seq_len):
    x, y = temporal_order(400, seq_len, np.random.default_rng(2), relevant=relevant)
    assert x.shape == (400, seq_len, 8) and np.all(x.sum(-1) == 1)
    symbols = x.argmax(-1)
    assert np.all(symbols[:, 0] == 4) and np.all(symbols[:, -1] == 5)  # B ... E
    for row, label in zip(symbols, y):
        relevant_symbols = [s for s in row if s in (6, 7)]  # X, Y in order of time
        assert len(relevant_symbols) == relevant
        assert label == int("".join(str(s - 6) for s in relevant_symbols), 2)
    assert set(np.unique(y)) == set(range(2 ** relevant))  # every class occurs


def test_permutation_class_is_the_first_symbol():
    x, y = permutation(300, 50, np.random.default_rng(3))
    symbols = x.argmax(-1)
    assert np.array_equal(symbols[:, 0], y)
    assert np.all(symbols[:, 1:] >= 2)  # the two classes' symbols never come back
    assert set(np.unique(y)) == {0, 1}


@pytest.mark.parametrize("name", list(TASKS))
def test_tasks_are_seeded(name):
    generate, _ = TASKS[name]
    a = generate(50, 20, np.random.default_rng(7))
    b = generate(50, 20, np.random.default_rng(7))
    c = generate(50, 20, np.random.default_rng(8))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("call", [lambda: adding(5, 1, np.random.default_rng(0)),
                                  lambda: temporal_order(5, 9, np.random.default_rng(0)),
                                  lambda: temporal_order(5, 20, np.random.default_rng(0), relevant=4),
                                  lambda: permutation(5, 2.5, np.random.default_rng(0))])
def test_bad_lengths_are_clear_errors(call):
    with pytest.raises(ValueError, match="seq_len|relevant"):
        call()
