"""The long-term-dependency problems of Hochreiter and Schmidhuber (1997),
generated offline from a seed: every example is a sequence x of shape
(T, features) and one target read at its end.

* ``adding`` (their experiment 4, in the form of Le et al. 2015): x_t =
  (v_t, m_t) with v_t ~ U(0, 1) and two markers m = 1, one in each half of
  the sequence; the target is the sum of the two marked values, in [0, 2]
  (regression: predicting 1 everywhere scores a squared error of 1/6).
* ``temporal-order`` (experiment 6a, two symbols; 6b, three): one-hot
  symbols from {a, b, c, d, B, E, X, Y}; B opens, E closes, the rest are
  distractors a–d except two (three) positions, drawn in fixed windows of
  the sequence, that hold X or Y; the class is their order (XX, XY, YX, YY:
  4 classes; 8 with three).
* ``permutation`` (the random-permutation problem, experiment 2b, in the
  form of Martens and Sutskever 2011): the first symbol is one of two, the
  other T − 1 are drawn from the remaining symbols of the alphabet; the
  class is the first symbol.

``PUBLISHED_TASKS`` holds the first four in the form of Pascanu et al.
(2013), on which Manchev and Spratling (2020) measure target propagation
through time (``sequence_form=pascanu2013``): adding's target the mean of
the two values, the first marked in the first tenth, the second in
[0.1 T, 0.5 T); temporal order over X, Y and four distractors, without
start and end symbols, in windows at 0.1 T and 0.5 T (0.1, 0.3, 0.6 T with
three); permutation over 100 symbols. (Their lengths vary from batch to
batch, and adding's by up to a tenth within one; here every sequence has
length T.)

and one with a target at every step, read by a read-out on every state:

* ``copy`` (the copying-memory problem, Hochreiter and Schmidhuber 1997, in
  the form of Arjovsky et al. 2016 with ``COPY_SYMBOLS`` symbols to recall):
  the first steps hold symbols from {1..8}, then blanks (0), a delimiter (9)
  and blanks; at the last ``COPY_SYMBOLS`` steps the net must output the
  symbols in order. y (n, T) holds the class of the symbol (0..7) at those
  steps and −1 (no target) at the others.
"""
from __future__ import annotations

import numpy as np

__all__ = ["TASKS", "PUBLISHED_TASKS", "PERMUTATION_SYMBOLS", "COPY_SYMBOLS", "adding", "temporal_order", "permutation", "copy"]

PERMUTATION_SYMBOLS = 16  # alphabet of the permutation problem (Martens and Sutskever used 100)
_ORDER_SYMBOLS = 8        # a, b, c, d, B, E, X, Y
_B, _E, _X = 4, 5, 6      # indices of B, E and X (Y = X + 1) in the one-hot code
COPY_SYMBOLS = 5          # symbols to recall in the copy problem (Arjovsky et al. used 10)
_COPY_ALPHABET = 10       # blank, 8 symbols, delimiter


def _check_length(seq_len: int, shortest: int) -> None:
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < shortest:
        raise ValueError(f"seq_len must be an integer >= {shortest}, got {seq_len!r}")


def adding(n: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (n, T, 2) float32 (value, marker), y (n,) float32: the sum of the two marked values."""
    _check_length(seq_len, 2)
    values = rng.uniform(0.0, 1.0, (n, seq_len)).astype(np.float32)
    half = seq_len // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, seq_len, n)
    markers = np.zeros((n, seq_len), np.float32)
    rows = np.arange(n)
    markers[rows, first] = markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=-1), y.astype(np.float32)


def _one_hot(symbols: np.ndarray, size: int) -> np.ndarray:
    return np.eye(size, dtype=np.float32)[symbols]


def temporal_order(n: int, seq_len: int, rng: np.random.Generator,
                   relevant: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """x (n, T, 8) one-hot float32, y (n,) int64 in [0, 2**relevant): the
    order of the X/Y symbols, read as a binary number (X = 0, Y = 1), first
    symbol most significant. Their positions are drawn in the windows
    [0.1 T, 0.2 T), [0.5 T, 0.6 T) (two symbols) or [0.1 T, 0.2 T),
    [0.33 T, 0.43 T), [0.66 T, 0.76 T) (three), as in the paper for T ≈ 100."""
    if relevant not in (2, 3):
        raise ValueError(f"temporal order takes 2 or 3 relevant symbols, got {relevant!r}")
    _check_length(seq_len, 10)
    starts = (0.1, 0.5) if relevant == 2 else (0.1, 0.33, 0.66)
    symbols = rng.integers(0, 4, (n, seq_len))  # distractors a..d
    symbols[:, 0], symbols[:, -1] = _B, _E
    bits = rng.integers(0, 2, (n, relevant))
    rows = np.arange(n)
    for k, start in enumerate(starts):
        low = max(1, int(start * seq_len))
        high = min(seq_len - 1, max(low + 1, int((start + 0.1) * seq_len)))
        symbols[rows, rng.integers(low, high, n)] = _X + bits[:, k]
    y = (bits * (2 ** np.arange(relevant - 1, -1, -1))).sum(axis=1)
    return _one_hot(symbols, _ORDER_SYMBOLS), y.astype(np.int64)


def permutation(n: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (n, T, 16) one-hot float32, y (n,) int64 in {0, 1}: the first symbol."""
    _check_length(seq_len, 2)
    symbols = rng.integers(2, PERMUTATION_SYMBOLS, (n, seq_len))
    y = rng.integers(0, 2, n)
    symbols[:, 0] = y
    return _one_hot(symbols, PERMUTATION_SYMBOLS), y.astype(np.int64)


def copy(n: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (n, T, 10) one-hot float32, y (n, T) int64: the first ``COPY_SYMBOLS``
    symbols (classes 0..7) at the last ``COPY_SYMBOLS`` steps, −1 elsewhere;
    the delimiter just before them. Each symbol is recalled T − COPY_SYMBOLS
    steps after it was read."""
    _check_length(seq_len, 2 * COPY_SYMBOLS + 1)
    data = rng.integers(0, 8, (n, COPY_SYMBOLS))
    symbols = np.zeros((n, seq_len), np.int64)
    symbols[:, :COPY_SYMBOLS] = data + 1
    symbols[:, seq_len - COPY_SYMBOLS - 1] = _COPY_ALPHABET - 1
    y = np.full((n, seq_len), -1, np.int64)
    y[:, seq_len - COPY_SYMBOLS:] = data
    return _one_hot(symbols, _COPY_ALPHABET), y


# The forms of Pascanu et al. (2013), whose generators Manchev and Spratling (2020) train on.

def _window(n: int, seq_len: int, start: float, rng: np.random.Generator) -> np.ndarray:
    """Positions drawn in [start·T, start·T + 0.1·T), whole steps."""
    return int(start * seq_len) + rng.integers(0, max(1, int(0.1 * seq_len)), n)


def adding_pascanu(n: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (n, T, 2) (value, marker), y (n,) float32: the mean of the two marked
    values, the first marked in the first tenth of the sequence, the second
    in [0.1 T, 0.5 T)."""
    _check_length(seq_len, 10)
    values = rng.uniform(0.0, 1.0, (n, seq_len)).astype(np.float32)
    tenth = int(0.1 * seq_len)
    first, second = rng.integers(0, tenth, n), tenth + rng.integers(0, int(0.4 * seq_len), n)
    markers = np.zeros((n, seq_len), np.float32)
    rows = np.arange(n)
    markers[rows, first] = markers[rows, second] = 1.0
    y = (values[rows, first] + values[rows, second]) / 2
    return np.stack([values, markers], axis=-1), y.astype(np.float32)


def temporal_order_pascanu(n: int, seq_len: int, rng: np.random.Generator,
                           relevant: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """x (n, T, 6) one-hot (X, Y, then the distractors a–d), y (n,) int64 in
    [0, 2**relevant): Σ_k v_k 2^k, v_k = 1 where the k-th relevant symbol is
    Y, each drawn in a window of 0.1 T starting at 0.1 T, 0.5 T (two), or
    0.1 T, 0.3 T, 0.6 T (three); no start or end symbols."""
    if relevant not in (2, 3):
        raise ValueError(f"temporal order takes 2 or 3 relevant symbols, got {relevant!r}")
    _check_length(seq_len, 10)
    symbols = rng.integers(2, 6, (n, seq_len))
    bits = rng.integers(0, 2, (n, relevant))
    rows = np.arange(n)
    for k, start in enumerate((0.1, 0.5) if relevant == 2 else (0.1, 0.3, 0.6)):
        symbols[rows, _window(n, seq_len, start, rng)] = bits[:, k]
    return _one_hot(symbols, 6), (bits * 2 ** np.arange(relevant)).sum(axis=1).astype(np.int64)


def permutation_pascanu(n: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (n, T, 100) one-hot, y (n,) int64 in {0, 1}: the first symbol, 0 or
    1, the others drawn from 2..99."""
    _check_length(seq_len, 2)
    symbols = rng.integers(2, 100, (n, seq_len))
    y = rng.integers(0, 2, n)
    symbols[:, 0] = y
    return _one_hot(symbols, 100), y.astype(np.int64)


# name -> (generator, number of classes; 0 for a regression target)
TASKS = {
    "adding": (adding, 0),
    "temporal-order": (temporal_order, 4),
    "temporal-order-3": (lambda n, seq_len, rng: temporal_order(n, seq_len, rng, relevant=3), 8),
    "permutation": (permutation, 2),
    "copy": (copy, 8),
}

# ``sequence_form=pascanu2013``: name -> the same, in the published form
PUBLISHED_TASKS = {
    "adding": (adding_pascanu, 0),
    "temporal-order": (temporal_order_pascanu, 4),
    "temporal-order-3": (lambda n, seq_len, rng: temporal_order_pascanu(n, seq_len, rng, relevant=3), 8),
    "permutation": (permutation_pascanu, 2),
}
