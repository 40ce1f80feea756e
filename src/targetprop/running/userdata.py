"""Datasets a user brings, read from local files (nothing is downloaded):

* ``path/to/file.npz``: arrays ``x`` (N, features), (N, H, W) or (N, C, H, W)
  and ``y`` (N,) integer labels 0..K−1, with optional ``x_test`` and
  ``y_test``;
* ``imagefolder:DIR``: one sub-folder of images per class (the sorted folder
  names are the classes), or ``DIR/train`` and ``DIR/test`` laid out so;
* ``path/to/file.trees``: bracketed trees with labels, one per line, for
  a tree net (:mod:`.trees`);
* ``cifar10``: the CIFAR-10 python batches (``data_batch_1`` … ``_5``,
  ``test_batch``) in the folder the ``data_root`` setting names.

Each becomes a :class:`~.sources.Raw`; a source without its own test split
gets the fixed, seed-independent stratified one of the built-in sets.
Shapes, dtypes, label ranges and missing files are checked here with
messages that say what is wrong and where, before any training.
"""
from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path

import numpy as np

from .sources import DatasetNotAvailable, Raw, fixed_split_raw, readonly
from .trees import encode_trees, read_tree_file, tree_tokens

__all__ = ["CIFAR10_CLASSES", "IMAGE_SUFFIXES", "is_user_data", "check_user_data", "load_user_data",
           "read_examples"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_FOLDER = "cifar-10-batches-py"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_IMAGEFOLDER = "imagefolder:"


def is_user_data(spec: str) -> bool:
    """Whether ``spec`` names a user's dataset rather than a built-in one."""
    return spec == "cifar10" or spec.startswith(_IMAGEFOLDER) or spec.endswith((".npz", ".trees"))


def check_user_data(spec: str, root: str | os.PathLike | None) -> None:
    """The files ``spec`` needs exist (cheap: nothing is read); raises
    :class:`DatasetNotAvailable` saying what is missing and where."""
    if spec == "cifar10":
        _cifar10_folder(root)
    elif spec.startswith(_IMAGEFOLDER):
        _class_folders(Path(spec[len(_IMAGEFOLDER):]).expanduser())
    elif not Path(spec).expanduser().is_file():
        raise DatasetNotAvailable(f"data file {spec} not found")


def load_user_data(spec: str, root: str | os.PathLike | None) -> Raw:
    check_user_data(spec, root)
    if spec == "cifar10":
        return _load_cifar10(str(_cifar10_folder(root).resolve()))
    if spec.startswith(_IMAGEFOLDER):
        return _load_image_folder(str(Path(spec[len(_IMAGEFOLDER):]).expanduser().resolve()))
    if spec.endswith(".trees"):
        return _load_trees(str(Path(spec).expanduser().resolve()))
    return _load_npz(str(Path(spec).expanduser().resolve()))


@functools.lru_cache(maxsize=2)
def _load_trees(path: str) -> Raw:
    """A file of bracketed trees, encoded over the tokens that occur in it (sorted)."""
    trees, labels, classes = read_tree_file(path)
    tokens = sorted({token for tree in trees for token in tree_tokens(tree)})
    x = encode_trees(trees, tuple(tokens))
    y = np.array([classes.index(label) for label in labels], np.int64)
    return fixed_split_raw(x.reshape(len(x), -1), y, scale=1.0, num_classes=len(classes), image_shape=None,
                           class_names=classes, tree_shape=x.shape[1:])


# ------------------------------------------------------------------ checks


def _features(x: np.ndarray, where: str) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """(N, F) features and the image shape ((H, W) or (C, H, W); None for flat data)."""
    if x.dtype.kind not in "uif" or x.ndim < 2 or x.ndim > 4:
        raise ValueError(f"{where}: expected a numeric array of shape (N, features), (N, H, W) or "
                         f"(N, C, H, W), got {x.dtype} of shape {x.shape}")
    if x.ndim == 4 and x.shape[1] > 4 and x.shape[3] <= 4:
        raise ValueError(f"{where}: shape {x.shape} looks channels-last; images must be (N, C, H, W): "
                         "use x.transpose(0, 3, 1, 2)")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{where}: holds NaN or infinite values")
    shape = tuple(int(d) for d in x.shape[1:]) if x.ndim > 2 else None
    return x.reshape(len(x), -1), shape


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    """``y`` as int64 labels, checked: one per example, integers, ≥ 0."""
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{where}: expected {n} labels of shape ({n},), got shape {y.shape}")
    if y.dtype.kind == "f" and np.array_equal(y, np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be integers 0..K-1, got {y.dtype}")
    if len(y) and y.min() < 0:
        raise ValueError(f"{where}: labels must be integers 0..K-1, found {y.min()}")
    return y.astype(np.int64)


def _check_classes(y: np.ndarray, y_test: np.ndarray | None, where: str) -> int:
    """The number of classes K, once the training labels hold every class
    0..K−1 (and the test labels no other): labels are not renumbered, so a
    prediction's class is the data's own."""
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError(f"{where}: every label is {present[0]}; a classifier needs examples of two or more classes")
    num_classes = int(max(y.max(), -1 if y_test is None or not len(y_test) else y_test.max())) + 1
    missing = sorted(set(range(num_classes)) - set(present.tolist()))
    if missing:
        raise ValueError(f"{where}: labels must be 0..K-1 with training examples of each; found "
                         f"{_listed(present.tolist())}, none of {_listed(missing)}: renumber them first "
                         "(y = numpy.unique(y, return_inverse=True)[1])")
    return num_classes


def _listed(values: list, shown: int = 8) -> str:
    return ", ".join(map(str, values[:shown])) + (", …" if len(values) > shown else "")


def _pixel_scale(x: np.ndarray) -> float:
    """What divides ``x`` into [0, 1]: 8-bit pixels by 255; other data are kept as stored."""
    return 255.0 if x.dtype == np.uint8 else 1.0


def _raw(x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None, y_test: np.ndarray | None,
         where: str, class_names: tuple[str, ...] | None = None) -> Raw:
    """Checked arrays as a Raw; without a test split, the fixed stratified one."""
    if len(x) == 0:
        raise ValueError(f"{where}: holds no examples")
    x, image_shape = _features(x, f"{where} x")
    y = _labels(y, len(x), f"{where} y")
    scale = _pixel_scale(x)
    if x_test is None:
        num_classes = _check_classes(y, None, f"{where} y")
        return fixed_split_raw(x, y, scale=scale, num_classes=num_classes, image_shape=image_shape,
                               class_names=class_names)
    x_test, test_shape = _features(x_test, f"{where} x_test")
    if test_shape != image_shape or x_test.shape[1] != x.shape[1]:
        raise ValueError(f"{where}: x_test examples have shape {test_shape or x_test.shape[1:]}, "
                         f"x's have {image_shape or x.shape[1:]}")
    y_test = _labels(y_test, len(x_test), f"{where} y_test")
    num_classes = _check_classes(y, y_test, f"{where} y")
    raw = Raw(x, y, x_test, y_test, scale=scale, num_classes=num_classes, image_shape=image_shape,
              class_names=class_names)
    readonly(raw.x_train, raw.y_train, raw.x_test, raw.y_test)
    return raw


# ------------------------------------------------------------------ .npz


def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as file:
            return {key: file[key] for key in file.files}
    except (OSError, ValueError):  # not a zip of .npy arrays, or one holding Python objects
        raise ValueError(f"{path}: not a .npz file of numeric arrays (numpy.savez(path, x=x, y=y) "
                         "writes one)") from None


@functools.lru_cache(maxsize=2)
def _load_npz(path: str) -> Raw:
    arrays = _npz_arrays(path)
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise ValueError(f"{path}: needs arrays 'x' and 'y' (optional 'x_test', 'y_test'); "
                         f"missing {', '.join(missing)}, found {', '.join(arrays) or 'none'}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise ValueError(f"{path}: 'x_test' and 'y_test' go together; only one is there")
    return _raw(arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test"), path)


def read_examples(path: str) -> tuple[np.ndarray, tuple[int, ...] | None, np.ndarray | None]:
    """A .npz file's examples to evaluate or predict: its array ``x`` as
    (N, features) floats in the loaded scale (8-bit pixels in [0, 1]), the
    image shape, and its labels ``y`` where it has them."""
    check_user_data(path, None)
    arrays = _npz_arrays(str(Path(path).expanduser()))
    if "x" not in arrays:
        raise ValueError(f"{path}: needs an array 'x' of examples (and 'y', labels, to evaluate); "
                         f"found {', '.join(arrays) or 'none'}")
    x, image_shape = _features(arrays["x"], f"{path} x")
    y = _labels(arrays["y"], len(x), f"{path} y") if "y" in arrays else None
    return x.astype(np.float64) / _pixel_scale(x), image_shape, y


# ------------------------------------------------------------------ image folders


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    """Class name → its image files, for ``folder`` (or its ``train`` part)."""
    if folder.exists() and not folder.is_dir():
        raise DatasetNotAvailable(f"imagefolder:{folder} is a file; imagefolder: takes a folder with one "
                                  "sub-folder of images per class")
    if not folder.is_dir():
        raise DatasetNotAvailable(f"image folder {folder} not found")
    if (folder / "train").is_dir():
        folder = folder / "train"
    classes = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
               for d in sorted(folder.iterdir()) if d.is_dir()}
    if not classes:
        raise DatasetNotAvailable(f"image folder {folder} holds no class sub-folders "
                                  "(expected DIR/<class>/<image>, one sub-folder per class)")
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise DatasetNotAvailable(f"image folder {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) "
                                  f"in class folder(s) {', '.join(empty)}")
    return classes


def _read_images(classes: dict[str, list[Path]], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) or (N, 3, H, W) uint8 images and their labels (positions in ``names``)."""
    try:
        from PIL import Image
    except ImportError as error:
        raise DatasetNotAvailable("image folders need Pillow: pip install Pillow") from error
    images, labels = [], []
    for name, files in classes.items():
        if name not in names:
            raise ValueError(f"class folder {name!r} of the test part is not among the training "
                             f"classes ({', '.join(names)})")
        for path in files:
            try:
                with Image.open(path) as image:
                    images.append(image.copy())
            except OSError as error:
                raise ValueError(f"{path}: not a readable image ({error})") from None
            labels.append(names.index(name))
    size = images[0].size
    for image, path in zip(images, (p for files in classes.values() for p in files)):
        if image.size != size:
            raise ValueError(f"{path} is {image.size[0]}×{image.size[1]}, the first image "
                             f"{size[0]}×{size[1]}; every image must have one size")
    grey = all(image.mode in ("1", "L") for image in images)
    arrays = [np.asarray(image.convert("L" if grey else "RGB"), dtype=np.uint8) for image in images]
    x = np.stack(arrays) if grey else np.stack(arrays).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64)


@functools.lru_cache(maxsize=2)
def _load_image_folder(folder: str) -> Raw:
    train = _class_folders(Path(folder))
    names = list(train)
    x, y = _read_images(train, names)
    test = None
    if (Path(folder) / "test").is_dir():
        test = _read_images(_class_folders(Path(folder) / "test"), names)
        if test[0].shape[1:] != x.shape[1:]:
            raise ValueError(f"{folder}: test images are {test[0].shape[1:]}, training images {x.shape[1:]}")
    raw = _raw(x, y, *(test or (None, None)), where=f"image folder {folder}", class_names=tuple(names))
    return raw._replace(num_classes=len(names))


# ------------------------------------------------------------------ CIFAR-10


def _cifar10_folder(root: str | os.PathLike | None) -> Path:
    """The folder holding CIFAR-10's batch files: ``root`` or its
    ``cifar-10-batches-py`` sub-folder."""
    if root is None:
        raise DatasetNotAvailable(
            "cifar10 reads the CIFAR-10 python batches from a local folder (nothing is downloaded): "
            "extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) and pass "
            "--set data_root=DIR, DIR holding data_batch_1 … data_batch_5 and test_batch "
            f"(or their folder {_CIFAR10_FOLDER})")
    folder = Path(root).expanduser()
    if (folder / _CIFAR10_FOLDER).is_dir():
        folder = folder / _CIFAR10_FOLDER
    missing = [name for name in (*_CIFAR10_TRAIN, "test_batch") if not (folder / name).is_file()]
    if missing:
        raise DatasetNotAvailable(f"CIFAR-10 batch files not found in {folder} (missing: {', '.join(missing)}); "
                                  "extract cifar-10-python.tar.gz there")
    return folder


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # The python batches are pickles (the dataset's own format): read only
    # files you trust, as with any pickle.
    try:
        with path.open("rb") as file:
            batch = pickle.load(file, encoding="bytes")
        data, labels = batch[b"data"], batch[b"labels"]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({error!r})") from None
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: expected rows of 3 072 pixels, got shape {data.shape}")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


@functools.lru_cache(maxsize=1)
def _load_cifar10(folder: str) -> Raw:
    batches = [_read_cifar_batch(Path(folder) / name) for name in _CIFAR10_TRAIN]
    x, y = (np.concatenate(parts) for parts in zip(*batches))
    x_test, y_test = _read_cifar_batch(Path(folder) / "test_batch")
    raw = _raw(x, y, x_test, y_test, where=f"CIFAR-10 in {folder}", class_names=CIFAR10_CLASSES)
    if raw.num_classes > 10:
        raise ValueError(f"CIFAR-10 in {folder}: labels outside 0..9")
    return raw._replace(num_classes=10)
