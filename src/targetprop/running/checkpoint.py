"""Atomic checkpoints with clear errors for corrupt or incompatible files,
and for a disk that fills up while one is written."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINTS", "CheckpointError", "save_checkpoint", "copy_checkpoint", "write_text",
           "load_checkpoint", "remove_partial_writes", "FORMAT_VERSION"]

# 2: settings per rule, named score totals and the divergence guard in the state
FORMAT_VERSION = 2
# The checkpoints of a run directory: where the run stopped, and after its best validation epoch.
CHECKPOINTS = {"last": "checkpoint.pt", "best": "best.pt"}
_PARTIAL = ".tmp"  # the suffix of a file being written


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit this run."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``:
    an interruption leaves either the old checkpoint or the new one, never
    half; so does a full disk (a :class:`CheckpointError` that says so)."""
    path = Path(path)
    _replace_atomically(path, lambda handle: torch.save({"format_version": FORMAT_VERSION, **state}, handle))


def copy_checkpoint(source: str | Path, path: str | Path) -> None:
    """``source``'s bytes as ``path``, replaced atomically like a save."""
    with open(source, "rb") as original:
        _replace_atomically(Path(path), lambda handle: shutil.copyfileobj(original, handle))


def write_text(path: str | Path, text: str) -> None:
    """A small file of the run (``summary.json``, ``metrics.csv``) replaced atomically like a save."""
    _replace_atomically(Path(path), lambda handle: handle.write(text.encode()))


def _replace_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=_PARTIAL, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the last good {path.name} is kept" if path.exists() else f"no {path.name} was written before"
        raise CheckpointError(f"could not write {path} ({error.strerror or error}); {kept}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(folder: str | Path) -> None:
    """Remove what a killed process left half-written in ``folder`` (its last good files stay)."""
    for partial in Path(folder).glob(f"*{_PARTIAL}"):
        partial.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else None
        raise CheckpointError(f"checkpoint {path} is not a targetprop checkpoint of format version "
                              f"{FORMAT_VERSION}" + (f" (it has version {found}: made by an earlier "
                                                     "targetprop, which can still read it)" if found else ""))
    return state
