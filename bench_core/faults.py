"""Crash points for the interruption tests: ``BDBENCH_CRASH_AT=point[@n]`` kills the process with SIGKILL the
n-th time (default: the first) it reaches ``point``.

Points: ``train`` (after a training step), ``eval`` (a cell computed, before its record reaches the store),
``store`` (inside the store's write transaction, before the commit). ``BDBENCH_CRASH_ONCE=path``: only the first process to reach the
point dies (it creates ``path``), so one worker of several is killed once. Unset — always, outside tests — this is one
dictionary lookup per call. A real ``kill -9`` at a random moment is what this stands in for: the tests use
fixed points so that each interruption they claim to survive is hit every time.
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def crash_point(point: str) -> None:
    wanted = os.environ.get("BDBENCH_CRASH_AT")
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == int(nth or 1):
        once = os.environ.get("BDBENCH_CRASH_ONCE")
        if once:  # several processes share the setting: only the first to get here dies
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)
