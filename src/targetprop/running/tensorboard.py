"""A run's per-epoch scores as TensorBoard event files (``log=tensorboard``),
beside ``metrics.csv``: every number of an epoch's row (losses, accuracies,
per-layer angles to back-prop, reconstruction errors, target steps) as a
scalar at the epoch's step, under a tag grouped by its first word
(``val_acc`` → ``val/acc``, ``angle_3`` → ``angle/3``); and the images a
rule makes at an epoch's end (a generative stack's samples) as a grid under
``images/NAME``."""
from __future__ import annotations

import math
from pathlib import Path

from .config import ConfigError

__all__ = ["check_tensorboard", "EpochLog", "tag"]


def check_tensorboard() -> None:
    """ConfigError when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError("log=tensorboard needs the tensorboard package: pip install -e \".[tensorboard]\" "
                          "(or pip install tensorboard)") from None


def tag(key: str) -> str:
    group, _, name = key.partition("_")
    return f"{group}/{name}" if name else group


class EpochLog:
    """One event file per session of the run (a resumed run adds one; TensorBoard reads them together)."""

    def __init__(self, out_dir: Path, info):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out_dir))
        self.info = info  # the data's DataInfo: image shape and scale of the images a rule draws

    @property
    def shows_images(self) -> bool:
        """Whether the data are 2-d images, so that drawn inputs can be shown."""
        return self.info.image_shape is not None and len(self.info.image_shape) == 2

    def write(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(tag(key), value, global_step=row["epoch"])
        self.writer.flush()

    def write_images(self, images: dict, epoch: int) -> None:
        """Each (n, features) batch of ``images`` as one grid, in [0, 1] as
        the data map inputs back (for data that :attr:`shows_images`)."""
        shape = self.info.image_shape
        for name, x in images.items():
            grid = self.info.to_unit_range(x.detach().float().cpu()).clamp(0, 1).reshape(len(x), 1, *shape)
            self.writer.add_images(f"images/{name}", grid, global_step=epoch)

    def close(self) -> None:
        self.writer.close()
