"""A user's own data: .npz files, image folders and CIFAR-10's python
batches, written here in those formats and read back against the arrays
that went in; the checks on bad files; augmentation against a search over
every crop offset."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from targetprop.cli import main
from targetprop.running.augment import PADDING, augment_batch
from targetprop.running.config import ConfigError, load_config
from targetprop.running.data import DatasetNotAvailable, load_dataset
from targetprop.running.setup import load_splits, validate_config
from targetprop.registry import make_rule
from targetprop.running.userdata import CIFAR10_CLASSES

Image = pytest.importorskip("PIL.Image")


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _raw_splits(spec: str, root=None):
    """Every split of ``spec`` as loaded, unstandardised, in original order."""
    return load_dataset(spec, val_size=0, standardize=False, root=root, dtype=torch.float64)


# ---------------------------------------------------------------- .npz


def _rows_sorted(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def test_npz_with_test_split_round_trips(tmp_path: Path) -> None:
    x, x_test = _images(30, (1, 4, 5)), _images(10, (1, 4, 5), seed=1)
    y, y_test = np.arange(30) % 3, np.arange(10) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    splits = _raw_splits(str(tmp_path / "d.npz"))
    assert splits.image_shape == (1, 4, 5) and splits.num_features == 20 and splits.num_classes == 3
    np.testing.assert_array_equal(splits.test.tensors[0].numpy(), x_test.reshape(10, -1) / 255.0)
    np.testing.assert_array_equal(splits.test.tensors[1].numpy(), y_test)
    train = np.column_stack([splits.train.tensors[1].numpy(), 255 * splits.train.tensors[0].numpy()])
    np.testing.assert_array_equal(_rows_sorted(train), _rows_sorted(np.column_stack([y, x.reshape(30, -1)])))


def test_npz_without_test_split_is_split_by_class(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)  # flat floats: kept as stored
    y = np.repeat(np.arange(5), 10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    splits = _raw_splits(str(tmp_path / "d.npz"))
    assert splits.image_shape is None and splits.num_classes == 5
    assert len(splits.train) == 40 and len(splits.test) == 10
    assert np.bincount(splits.test.tensors[1].numpy()).tolist() == [2] * 5
    together = torch.cat([splits.train.tensors[0], splits.test.tensors[0]]).numpy()
    np.testing.assert_array_equal(_rows_sorted(together), _rows_sorted(x.astype(np.float64)))


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 3))}, "missing y"),
    ({"x": np.zeros((4, 3)), "y": np.zeros(5, dtype=int)}, "expected 4 labels"),
    ({"x": np.zeros((4, 8, 8, 3)), "y": np.zeros(4, dtype=int)}, "channels-last"),
    ({"x": np.zeros((4, 3)), "y": np.array([0, 1, -1, 0])}, "0..K-1, found -1"),
    ({"x": np.zeros((4, 3)), "y": np.array([0, 0.5, 1, 0])}, "must be integers"),
    ({"x": np.full((4, 3), np.nan), "y": np.zeros(4, dtype=int)}, "NaN"),
    ({"x": np.zeros(4), "y": np.zeros(4, dtype=int)}, "shape"),
    ({"x": np.zeros((4, 3)), "y": np.zeros(4, dtype=int), "x_test": np.zeros((2, 3))}, "go together"),
    ({"x": np.zeros((4, 3)), "y": np.zeros(4, dtype=int), "x_test": np.zeros((2, 4)),
      "y_test": np.zeros(2, dtype=int)}, "x_test examples have shape"),
])
def test_npz_problems_are_named(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        _raw_splits(str(tmp_path / "bad.npz"))


def test_missing_npz_is_reported_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotAvailable, match="not found"):
        validate_config(load_config(data=str(tmp_path / "none.npz")))


# ---------------------------------------------------------------- image folders


def _write_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = image if image.ndim == 2 else image.transpose(1, 2, 0)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


@pytest.mark.parametrize("shape", [(6, 5), (3, 6, 5)])
def test_image_folder_round_trips(tmp_path: Path, shape: tuple[int, ...]) -> None:
    names = ["cat", "dog"]
    x, y = _images(8, shape), np.array([0, 1] * 4)
    x_test, y_test = _images(4, shape, seed=1), np.array([1, 0, 1, 0])
    _write_folder(tmp_path / "train", x, y, names)
    _write_folder(tmp_path / "test", x_test, y_test, names)
    splits = _raw_splits(f"imagefolder:{tmp_path}")
    assert splits.image_shape == shape and splits.num_classes == 2
    assert splits.class_name(1) == "dog"
    # files are read class by class, in name order
    expected = np.concatenate([x_test[y_test == 0], x_test[y_test == 1]]).reshape(4, -1) / 255.0
    np.testing.assert_array_equal(splits.test.tensors[0].numpy(), expected)
    np.testing.assert_array_equal(splits.test.tensors[1].numpy(), [0, 0, 1, 1])
    assert len(splits.train) == 8


def test_image_folder_problems_are_named(tmp_path: Path) -> None:
    _write_folder(tmp_path / "a", _images(2, (4, 4)), np.array([0, 1]), ["x", "y"])
    Image.fromarray(_images(1, (5, 4))[0]).save(tmp_path / "a" / "y" / "odd.png")
    with pytest.raises(ValueError, match="one size"):
        _raw_splits(f"imagefolder:{tmp_path / 'a'}")
    (tmp_path / "b" / "empty").mkdir(parents=True)
    with pytest.raises(DatasetNotAvailable, match="no images"):
        _raw_splits(f"imagefolder:{tmp_path / 'b'}")
    (tmp_path / "c").mkdir()
    with pytest.raises(DatasetNotAvailable, match="no class sub-folders"):
        _raw_splits(f"imagefolder:{tmp_path / 'c'}")


# ---------------------------------------------------------------- CIFAR-10


def _write_cifar(folder: Path, per_batch: int = 6) -> dict:
    folder.mkdir(parents=True)
    written = {}
    for k, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        data = _images(per_batch, (3072,), seed=k)
        labels = [(k + j) % 10 for j in range(per_batch)]
        with (folder / name).open("wb") as file:
            pickle.dump({b"data": data, b"labels": labels}, file)
        written[name] = (data, labels)
    return written


def test_cifar10_batches_round_trip(tmp_path: Path) -> None:
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    splits = _raw_splits("cifar10", root=tmp_path)  # the parent of the batch folder will do
    assert splits.image_shape == (3, 32, 32) and splits.num_classes == 10
    assert splits.class_name(3) == CIFAR10_CLASSES[3] == "cat"
    data, labels = written["test_batch"]
    np.testing.assert_array_equal(splits.test.tensors[0].numpy(), data / 255.0)
    np.testing.assert_array_equal(splits.test.tensors[1].numpy(), labels)
    assert len(splits.train) == 30


def test_cifar10_says_where_the_files_go(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotAvailable, match="data_root"):
        validate_config(load_config(data="cifar10"))
    _write_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotAvailable, match="missing: data_batch_3"):
        validate_config(load_config(data="cifar10", data_root=str(tmp_path / "c")))


# ---------------------------------------------------------------- augmentation


@pytest.mark.parametrize("shape", [(6, 7), (2, 6, 7)])
def test_crop_is_a_window_of_the_padded_image(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(40, int(np.prod(shape)))
    out = augment_batch(x, shape, "crop")
    images = x.reshape(40, -1, *shape[-2:])
    padded = torch.nn.functional.pad(images, (PADDING,) * 4)
    h, w = shape[-2:]
    offsets = set()
    for b in range(40):
        crop = out[b].reshape(images.shape[1:])
        matches = [(dy, dx) for dy in range(2 * PADDING + 1) for dx in range(2 * PADDING + 1)
                   if torch.equal(padded[b, :, dy:dy + h, dx:dx + w], crop)]
        assert matches, f"example {b} is no crop of its padded image"
        offsets.add(matches[0])
    assert len(offsets) > 10  # the offsets vary from example to example


def test_flip_mirrors_about_half_the_images() -> None:
    torch.manual_seed(0)
    x = torch.randn(400, 2 * 3 * 5)
    out = augment_batch(x, (2, 3, 5), "flip").reshape(400, 2, 3, 5)
    images = x.reshape(400, 2, 3, 5)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images)])
    assert bool((flipped ^ kept).all()) and 150 < int(flipped.sum()) < 250
    assert torch.equal(augment_batch(x, (2, 3, 5), "none"), x)


def test_augment_needs_images() -> None:
    config = validate_config(load_config(data="digits", augment="flip"))
    splits = load_splits(config, make_rule("bp"))  # digits are 8×8 images: accepted
    assert splits.image_shape == (8, 8)
    config = validate_config(load_config(data="mnist1d", augment="crop"))
    with pytest.raises(ConfigError, match="needs images"):
        load_splits(config, make_rule("bp"))


# ---------------------------------------------------------------- end to end


def test_train_on_an_image_folder_with_augmentation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = (rng.integers(0, 60, (60, 3, 8, 8)) + 60 * y[:, None, None, None]).astype(np.uint8)
    _write_folder(tmp_path / "images", x, y, ["a", "b", "c"])
    out = tmp_path / "run"
    assert main(["train", "--data", f"imagefolder:{tmp_path / 'images'}", "--rule", "dtp",
                 "--arch", "mlp:32x2", "--epochs", "3", "--batch-size", "16", "--no-progress",
                 "--set", "augment=crop-flip", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] and summary["test_accuracy"] > 0.5  # three separable classes


def test_bad_user_data_is_an_error_exit(tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 3)), y=np.array([0, 1, -2, 0]))
    assert main(["train", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "r")]) == 2
    assert "found -2" in capsys.readouterr().err
