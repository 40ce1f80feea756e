"""Datasets as a run uses them: train/val/test splits of a source
(:mod:`.sources`), standardised with training statistics and wrapped as
``TensorDataset`` objects; labels kept for a subset (semi-supervised runs);
the loaders, with a sampler that mixes labelled and unlabelled examples in
every batch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, TensorDataset

from .distributed import ShardedBatches
from .sources import DATASETS, DatasetNotAvailable, load_raw
from .userdata import check_user_data, is_user_data, load_user_data

__all__ = [
    "DATASETS",
    "STD_FLOOR",
    "check_data",
    "DataInfo",
    "DataSplits",
    "DatasetNotAvailable",
    "load_dataset",
    "make_loaders",
    "RunData",
    "run_data",
    "loader_data",
    "keep_labels",
    "LabelledMixSampler",
]

# Features are first scaled to roughly unit range, so an absolute floor is
# meaningful: it caps the amplification of near-constant pixels (common at
# image borders) at 100x, so rare non-zero test pixels stay bounded.
STD_FLOOR = 1e-2


@dataclass
class DataInfo:
    """What a network and a reader of its outputs need to know of a dataset,
    without its examples: shapes, classes and the scaling applied. A
    checkpoint keeps it (``state_dict``), so a run reopens without its data."""

    name: str
    num_features: int
    num_classes: int
    image_shape: tuple[int, ...] | None
    # the per-feature standardisation applied (None: features as loaded, in [0, 1])
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None
    sequence_shape: tuple[int, int] | None = None  # (T, features per step) of sequences, flattened in x
    tree_shape: tuple[int, int] | None = None  # (nodes, 3 + features) of encoded trees, flattened in x

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's natural shape, as a network reads it: (C, H, W) for
        images ((1, H, W) for grey ones), (T, features) for sequences,
        (nodes, 3 + features) for trees (:mod:`targetprop.core.tree`),
        (features,) otherwise."""
        if self.image_shape is not None:
            return (1, *self.image_shape) if len(self.image_shape) == 2 else tuple(self.image_shape)
        if self.sequence_shape is not None:
            return tuple(self.sequence_shape)
        if self.tree_shape is not None:
            return tuple(self.tree_shape)
        return (self.num_features,)

    @property
    def num_outputs(self) -> int:
        """Units of the read-out: one per class, or one real output (regression)."""
        return self.num_classes or 1

    def class_name(self, label: int) -> str:
        """A readable name for class ``label`` (the digit itself for digit sets)."""
        return str(label) if self.class_names is None else self.class_names[label]

    def to_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """Features back in their loaded [0, 1] scale (undoing standardisation)."""
        if self.mean is None:
            return x
        return x * self.std.to(x) + self.mean.to(x)

    def state_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(DataInfo)}

    @classmethod
    def from_state(cls, state: dict) -> "DataInfo":
        values = dict(state)
        for key in ("image_shape", "sequence_shape", "tree_shape", "class_names"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(kw_only=True)
class DataSplits(DataInfo):
    """Train/val/test tensors of one dataset plus its :class:`DataInfo`."""

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset

    @property
    def info(self) -> DataInfo:
        return DataInfo(**{f.name: getattr(self, f.name) for f in fields(DataInfo)})

    @property
    def targets_per_step(self) -> bool:
        """Whether a sequence has a target at every step (y of shape (N, T)):
        the read-out then reads every state."""
        return self.train.tensors[1].dim() == 2


def _num_val(val_size: float | int, n: int) -> int:
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float, np.integer, np.floating)):
        raise ValueError(f"val_size must be a fraction in [0, 1) or a count, got {val_size!r}")
    if isinstance(val_size, (float, np.floating)):
        if not 0.0 <= val_size < 1.0:
            raise ValueError(f"fractional val_size must lie in [0, 1), got {val_size}")
        n_val = int(round(float(val_size) * n))
    else:
        n_val = int(val_size)
        if n_val < 0:
            raise ValueError(f"val_size must be non-negative, got {n_val}")
    if n_val >= n:
        raise ValueError(f"val_size={val_size!r} leaves no training examples (train split has {n})")
    return n_val


def _split_indices(n: int, val_size: float | int, seed: int, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Validation and training indices from one permutation drawn from ``seed``;
    ``limit`` keeps the first ``limit`` training ones."""
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = _num_val(val_size, n)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return val_idx, train_idx if limit is None else train_idx[: int(limit)]


def _check_split_sizes(name: str, n_train: int, n_val: int, n_test: int, val_size: float | int) -> None:
    if not n_test or (val_size and not n_val):
        raise ValueError(f"{name}: too few examples for its splits: {n_train} training, {n_val} validation "
                         f"(val_size {val_size}) and {n_test} test examples; each split needs at least one "
                         "(more data, a test split of its own, or val_size as a count)")


def _standardize(xs: dict[str, np.ndarray], work: type,
                 sequence_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Standardise every split in place with the training split's per-feature
    mean and std (floored at ``STD_FLOOR``); returns them (float64). A
    sequence's features are pooled over its steps (a recurrent net reads
    every step with the same weights, so every step is scaled alike)."""
    if sequence_shape is None:
        mean = xs["train"].mean(axis=0, dtype=np.float64)
        std = np.maximum(xs["train"].std(axis=0, dtype=np.float64), STD_FLOOR)
    else:
        steps, features = sequence_shape
        per_step = xs["train"].reshape(-1, features)
        mean = np.tile(per_step.mean(axis=0, dtype=np.float64), steps)
        std = np.tile(np.maximum(per_step.std(axis=0, dtype=np.float64), STD_FLOOR), steps)
    for x in xs.values():
        x -= mean.astype(work)
        x /= std.astype(work)
    return mean, std


def check_data(name: str, root: str | os.PathLike | None = None) -> None:
    """``name`` is a built-in dataset or a user's (``path.npz``,
    ``imagefolder:DIR``, ``cifar10`` in ``root``) whose files exist; raises
    ``ValueError`` or ``DatasetNotAvailable`` saying what is wrong."""
    if is_user_data(name):
        check_user_data(name, root)
    elif name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, "
                         "or your own: path/to/file.npz, imagefolder:DIR or cifar10 (with data_root=DIR)")


def load_dataset(
    name: str,
    *,
    val_size: float | int = 0.1,
    seed: int = 0,
    standardize: bool = True,
    dtype: torch.dtype = torch.float32,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    **generated,
) -> DataSplits:
    """Load dataset ``name`` (one of ``DATASETS`` or a user's, see
    :func:`check_data`) as standardised train/val/test splits.

    ``val_size`` is a fraction in [0, 1) or an example count carved out of the
    training set with a permutation drawn from ``seed``. ``limit`` keeps only
    the first ``limit`` of the shuffled training examples (val/test untouched).
    With ``standardize``, per-feature mean/std of the returned training split
    (std floored at ``STD_FLOOR``) are applied to all splits. ``root`` is the
    folder of fashion-mnist's or CIFAR-10's files; ``generated`` the settings
    of a generated task (``seq_len``, ``sequence_form``, ``tree_depth``:
    :func:`.sources.load_raw`). Trees are never standardised (their rows
    encode the structure).
    Raises ``DatasetNotAvailable`` if the data's package/files are missing.
    """
    check_data(name, root)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype!r}")

    raw = load_user_data(name, root) if is_user_data(name) else load_raw(name, root, **generated)
    val_idx, train_idx = _split_indices(len(raw.y_train), val_size, seed, limit)
    _check_split_sizes(name, len(train_idx), len(val_idx), len(raw.y_test), val_size)

    # Work in float64 only when asked for it, to keep fashion-mnist memory modest.
    work = np.float64 if dtype == torch.float64 else np.float32
    xs = {"train": raw.x_train[train_idx].astype(work), "val": raw.x_train[val_idx].astype(work),
          "test": raw.x_test.astype(work)}
    ys = {"train": raw.y_train[train_idx], "val": raw.y_train[val_idx], "test": raw.y_test}
    if raw.scale != 1.0:
        for x in xs.values():
            x /= work(raw.scale)
    mean, std = (_standardize(xs, work, raw.sequence_shape) if standardize and raw.tree_shape is None
                 else (None, None))

    y_dtype = torch.int64 if raw.num_classes else dtype  # class labels, or real targets
    datasets = {split: TensorDataset(torch.from_numpy(np.ascontiguousarray(xs[split])).to(dtype),
                                     torch.tensor(ys[split], dtype=y_dtype))  # a copy: never alias the cache
                for split in xs}
    return DataSplits(
        name=name,
        **datasets,
        num_features=int(raw.x_train.shape[1]),
        num_classes=raw.num_classes,
        mean=None if mean is None else torch.from_numpy(mean).to(dtype),
        std=None if std is None else torch.from_numpy(std).to(dtype),
        **{key: getattr(raw, key) for key in ("image_shape", "class_names", "sequence_shape", "tree_shape")},
    )


def keep_labels(y: torch.Tensor, count: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """A copy of ``y`` that keeps the labels of ``count`` examples, spread as
    evenly over the classes as they allow and picked by ``seed``; every other
    label becomes −1 ("unlabelled") for semi-supervised training (Bengio 2014 §3)."""
    if y.is_floating_point():
        raise ValueError("labels=N keeps class labels: this dataset has real targets (regression)")
    if y.dim() != 1:
        raise ValueError("labels=N keeps the labels of whole examples: this dataset has a target at every "
                         "step of a sequence")
    if count < num_classes:
        raise ValueError(f"keeping {count} labels leaves some of the {num_classes} classes unlabelled")
    if count > len(y):
        raise ValueError(f"cannot keep {count} labels: the training split has {len(y)} examples")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=generator)
    # rank of each example within its class, in the shuffled order
    sorted_labels, by_label = torch.sort(y[order], stable=True)
    counts = torch.bincount(y, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(y)
    rank[order[by_label]] = torch.arange(len(y)) - starts[sorted_labels]
    # take the lowest ranks round-robin over classes until count labels are kept
    keep_order = torch.argsort(rank * num_classes + y, stable=True)[:count]
    kept = torch.full_like(y, -1)
    kept[keep_order] = y[keep_order]
    return kept


class LabelledMixSampler(Sampler):
    """Semi-supervised batches: every batch holds ``labelled_per_batch``
    labelled examples (y ≥ 0) and fills the rest with unlabelled ones (y = −1).

    One pass is one sweep over the unlabelled examples in random order; the
    labelled ones are cycled, reshuffled each time they run out. With 100
    labels among 54 000 examples, uniform batches would hold a labelled
    example once in four batches. All randomness comes from ``generator``, so
    a pass replays exactly from the generator's state at its start.
    """

    def __init__(self, y: torch.Tensor, batch_size: int, labelled_per_batch: int,
                 generator: torch.Generator):
        if not 0 < labelled_per_batch < batch_size:
            raise ValueError(f"labelled_per_batch must lie in 1..{batch_size - 1}, got {labelled_per_batch}")
        self.labelled = torch.nonzero(y >= 0).flatten()
        self.unlabelled = torch.nonzero(y < 0).flatten()
        if len(self.labelled) == 0 or len(self.unlabelled) == 0:
            raise ValueError("labelled_per_batch needs both labelled and unlabelled examples")
        self.per_batch = labelled_per_batch
        self.fill = batch_size - labelled_per_batch
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.unlabelled) // self.fill)

    def __iter__(self):
        unlabelled = self.unlabelled[torch.randperm(len(self.unlabelled), generator=self.generator)]
        needed = len(self) * self.per_batch
        rounds = -(-needed // len(self.labelled))
        labelled = torch.cat([self.labelled[torch.randperm(len(self.labelled), generator=self.generator)]
                              for _ in range(rounds)])
        for b in range(len(self)):
            yield torch.cat([labelled[b * self.per_batch:(b + 1) * self.per_batch],
                             unlabelled[b * self.fill:(b + 1) * self.fill]]).tolist()


def make_loaders(
    splits: DataSplits,
    batch_size: int,
    *,
    seed: int = 0,
    eval_batch_size: int = 1000,
    drop_last: bool = False,
    labelled_per_batch: int = 0,
    group=None,
) -> dict[str, DataLoader]:
    """Return ``{"train", "val", "test"}`` DataLoaders.

    The train loader shuffles with its own ``torch.Generator`` seeded by ``seed``
    (reproducible, independent of the global RNG; it is ``loader.generator``);
    ``drop_last`` applies to it only. Val/test loaders keep order and use ``eval_batch_size``.
    ``labelled_per_batch`` > 0 mixes that many labelled examples into every
    training batch (:class:`LabelledMixSampler`; ``drop_last`` does not apply).
    With a data-parallel ``group`` (:mod:`.distributed`) the train loader
    yields this process's shard of every batch.
    """
    if batch_size < 1 or eval_batch_size < 1:
        raise ValueError(
            f"batch sizes must be positive, got batch_size={batch_size}, "
            f"eval_batch_size={eval_batch_size}"
        )
    generator = torch.Generator().manual_seed(seed)
    # A BatchSampler as the sampler hands the dataset a whole list of indices, so
    # each batch is one tensor gather instead of batch_size lookups and a stack.
    if labelled_per_batch:
        shuffled = LabelledMixSampler(splits.train.tensors[1], batch_size, labelled_per_batch, generator)
    else:
        shuffled = BatchSampler(RandomSampler(splits.train, generator=generator), batch_size, drop_last)
    if group is not None:
        shuffled = ShardedBatches(shuffled, group)
    return {
        "train": DataLoader(splits.train, sampler=shuffled, batch_size=None, generator=generator,
                            num_workers=0),
        "val": DataLoader(splits.val, batch_size=eval_batch_size, shuffle=False, num_workers=0),
        "test": DataLoader(splits.test, batch_size=eval_batch_size, shuffle=False, num_workers=0),
    }


@dataclass
class RunData:
    """What a run trains and evaluates on: the data's description, its
    loaders (``train``, ``val``, ``test``; the test one may be None), the
    fixed diagnostics batch, whether a sequence has a target at every step,
    and the train loader's shuffling generator (None where it has none of
    its own: a resumed run then replays the batch count, not the order)."""
    info: DataInfo
    loaders: dict
    probe: tuple[torch.Tensor, torch.Tensor]
    targets_per_step: bool
    shuffle_generator: torch.Generator | None


def run_data(splits: DataSplits, batch_size: int, probe_size: int, *, seed: int = 0, labelled_per_batch: int = 0,
             group=None) -> RunData:
    """A run's data from its splits (:func:`make_loaders`); the probe is the
    first examples of the validation split (of the training one if empty)."""
    loaders = make_loaders(splits, batch_size, seed=seed, labelled_per_batch=labelled_per_batch, group=group)
    source = splits.val if len(splits.val) else splits.train
    n = min(probe_size, len(source))
    return RunData(splits.info, loaders, tuple(t[:n] for t in source.tensors), splits.targets_per_step,
                   loaders["train"].generator)


def loader_data(train: DataLoader, val: DataLoader, test: DataLoader | None, num_outputs: int,
                probe_size: int) -> RunData:
    """A run's data from a user's own loaders of (x, y) batches: x in each
    example's natural shape ((C, H, W), (T, features) or (features,)), y class
    indices (``num_outputs`` classes) or real targets. The probe is the first
    validation examples."""
    xs, ys, count = [], [], 0
    for x, y in val:
        xs.append(x)
        ys.append(y)
        count += len(x)
        if count >= probe_size:
            break
    if not xs:
        raise ValueError("the validation loader yields no batches")
    x, y = torch.cat(xs)[:probe_size], torch.cat(ys)[:probe_size]
    shape = tuple(x.shape[1:])
    classes = 0 if y.is_floating_point() else num_outputs
    if classes and int(y.max()) >= classes:
        raise ValueError(f"the validation loader has label {int(y.max())}, but the model's read-out gives "
                         f"{classes} outputs (classes 0..{classes - 1})")
    info = DataInfo(name="given:DataLoader", num_features=math.prod(shape), num_classes=classes,
                    image_shape=shape if len(shape) == 3 else None,
                    sequence_shape=shape if len(shape) == 2 else None)
    loaders = {"train": train, "val": val, "test": test}
    return RunData(info, loaders, (x, y), y.dim() == 2 and not y.is_floating_point(),
                   getattr(train, "generator", None))
