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
            "python": platform.python_version(), "host": platform.node(), "git_commit": git_commit(),
            **cpu_description()}


VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "asimd", "sve")
"""CPU extensions that pick different float kernels (and so different last bits) in torch's CPU backend."""


def cpu_description(cpuinfo: str | None = None) -> dict[str, Any]:
    """``cpu`` (the model name) and ``cpu_flags`` (which of :data:`VECTOR_FLAGS` it has): the same cell keys
    computed on CPUs with other kernels give numbers up to a few points apart once a fine-tune amplifies the
    rounding, so both are part of every record's provenance."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {"cpu": platform.processor() or platform.machine(), "cpu_flags": []}
    name, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and name is None:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"cpu": name or platform.processor() or platform.machine(),
            "cpu_flags": [f for f in VECTOR_FLAGS if f in flags]}


def hardware_label(env: dict[str, Any]) -> str:
    """One line naming the machine a record was computed on: the GPU, or the CPU and its vector extensions."""
    if env.get("device_name"):
        return str(env["device_name"])
    cpu = env.get("cpu")
    if not cpu:
        return "unrecorded"
    flags = env.get("cpu_flags") or []
    return f"{cpu} ({', '.join(flags)})" if flags else str(cpu)


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
