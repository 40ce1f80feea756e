"""Image grids for generated samples, chains and completions (PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

__all__ = ["save_image_rows"]


def save_image_rows(rows: Sequence[torch.Tensor], image_shape: tuple[int, ...], path: str | Path,
                    row_labels: Sequence[str] | None = None,
                    titles: Sequence[str] | None = None, scale: float = 0.9) -> Path:
    """One row of images per tensor of ``rows`` ((n, features) each, values in
    [0, 1], clipped); ``titles`` label the columns of the first row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(image_shape) != 2:
        raise ValueError(f"image grids need 2-d images, this dataset's shape is {image_shape}")
    columns = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(scale * columns + (1.2 if row_labels else 0),
                                                          scale * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(columns):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(row):
                image = row[j].detach().float().cpu().clamp(0, 1).reshape(image_shape)
                ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
            if titles is not None and i == 0 and j < len(titles):
                ax.set_title(titles[j], fontsize=7)
        if row_labels is not None:
            axes[i][0].set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
