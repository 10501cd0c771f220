"""Unit locks: two runs on one ``$BDBENCH_HOME`` never compute the same unit at once.

A lock is an advisory ``flock`` on ``$BDBENCH_HOME/locks/<unit key>.lock``, held by the driver of a run from the
moment it hands a unit out until the unit's result is stored. The kernel releases it when its holder exits, a
``kill -9`` included, so a crashed run never leaves a unit locked. A second run that finds a unit held waits
for it (its log says so) and then, finding the result stored, skips it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class UnitLocks:
    """The driver's locks, by unit key."""

    def __init__(self, home: Path):
        self.folder = Path(home) / "locks"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._held: dict[str, int] = {}

    def try_acquire(self, key: str) -> bool:
        """Take the lock of ``key`` without waiting; False when another process holds it."""
        if key in self._held:
            return True
        fd = os.open(self.folder / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[key] = fd
        return True

    def release(self, key: str) -> None:
        fd = self._held.pop(key, None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def release_all(self) -> None:
        for key in list(self._held):
            self.release(key)
