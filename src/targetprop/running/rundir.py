"""The run directory: checked before any work, and held by one run at a time.

A run holds an exclusive ``flock`` on ``DIR/run.lock`` for its whole life; the
operating system drops it when the process ends, however it ends, so a lock
is never stale. The file names the holder (process id and host) for the
message a second run on the same directory gets.
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from .config import ConfigError

__all__ = ["LOCK_NAME", "HELD_BY_LAUNCHER", "RunDirectoryError", "check_out_dir", "RunLock"]

LOCK_NAME = "run.lock"
# Set by ``targetprop train --nproc N`` for its processes: the launcher holds the lock of this directory.
HELD_BY_LAUNCHER = "TARGETPROP_RUN_DIR_HELD"


class RunDirectoryError(ConfigError):
    """``--out`` cannot hold a run, or another run holds it."""


def check_out_dir(out: str | os.PathLike) -> Path:
    """``out`` as a path a run can write, or a clear error: empty, a file,
    below a file, or in a place this user cannot write."""
    if not str(out).strip():
        raise RunDirectoryError("--out is empty: name the run directory")
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise RunDirectoryError(f"--out {path} is a file, not a run directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirectoryError(f"--out {path} lies below {existing}, which is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"--out {path}: cannot create the run directory (no permission to write in "
                                f"{existing.resolve()})")
    return path


class RunLock:
    """The exclusive hold of one run directory (created if need be)."""

    def __init__(self, out: str | os.PathLike):
        self.path = check_out_dir(out)
        self.created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path / LOCK_NAME, "a+")
        except OSError as error:
            raise RunDirectoryError(f"--out {self.path}: cannot create the run directory ({error.strerror})") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise RunDirectoryError(f"--out {self.path} is in use by another run ({holder}); wait for it to end "
                                    "or choose another --out") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        self._file.flush()

    def release(self, *, remove_if_new: bool = False) -> None:
        """Let go of the directory; ``remove_if_new``: also remove it if this
        lock created it and nothing but the lock file was written there."""
        if self._file.closed:
            return
        self._file.close()
        if remove_if_new and self.created and [p.name for p in self.path.iterdir()] == [LOCK_NAME]:
            (self.path / LOCK_NAME).unlink()
            self.path.rmdir()
