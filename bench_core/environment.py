"""Where a result was computed: device, library versions, bdbench's git commit (when it runs from a checkout)."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from bench_core import __version__ as CORE_VERSION


@lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    import open_clip

    return {"bench_core": CORE_VERSION, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version(), "host": platform.node(), "git_commit": git_commit()}


def git_commit() -> str | None:
    """HEAD of the checkout bench_core is imported from, or None (an installed copy, or no git)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device) -> dict[str, Any]:
    """The environment block stored with every record."""
    env = dict(_static())
    env["device"] = str(device)
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    env["threads"] = torch.get_num_threads()
    return env
