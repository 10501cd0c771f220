"""The scene world's memory does not grow with its size: pretraining over 200K and over 2M pairs, measured in one
run; nothing asserts a number.

Each size is its own ``bdbench pretrain`` process on the default model (the tiny ViT, batch 256, 2 threads),
stopped after 200 training steps (``BDBENCH_CRASH_AT``): by then the world is generated and opened, the caption
vocabulary streamed, the epoch's order drawn and the model and optimiser built — everything whose size could
depend on the number of pairs. ``/proc/<pid>/status`` is sampled every 0.1 s:

- process memory: peak ``RssAnon`` (heap, tensors, Python objects) — the target, 2M over 200K <= 1.25;
- peak ``VmHWM``, which also counts the pages of the memory-mapped world file the process has touched: page
  cache the kernel can drop, not memory the process owns.

Generating the 2M-pair world takes minutes and 6 GB of disk (once per ``BDBENCH_HOME``). ``make bench``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.benchmark

SIZES = (200_000, 2_000_000)
STEPS = 200


def _suite(tmp_path, n_pretrain: int) -> str:
    raw = {"name": f"world{n_pretrain}", "model": {"arch": "tiny"},
           "data": {"kind": "scene", "n_pretrain": n_pretrain},
           "pretrain": {"epochs": 1, "lr": 1e-3, "batch_size": 256}, "resources": {"torch_threads": 2}}
    path = tmp_path / f"world{n_pretrain}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _peaks(suite: str, home) -> dict[str, float]:
    env = {**os.environ, "BDBENCH_HOME": str(home), "BDBENCH_CRASH_AT": f"train@{STEPS}"}
    proc = subprocess.Popen([sys.executable, "-m", "bench_core.cli", "pretrain", "--suite", suite], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    anon = hwm = 0
    while proc.poll() is None:
        try:
            anon = max(anon, _status_kib(proc.pid, "RssAnon"))
            hwm = max(hwm, _status_kib(proc.pid, "VmHWM"))
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    stderr = proc.stderr.read()
    assert "pretraining the clean model" in stderr, stderr[-2000:]  # it reached training before the stop
    return {"anon_mib": anon / 1024, "hwm_mib": hwm / 1024}


def test_world_memory_does_not_grow_with_pretraining_pairs(benchmark, tmp_path):
    home = tmp_path / "home"
    results = {}

    def measure():
        for n in SIZES:
            results[n] = _peaks(_suite(tmp_path, n), home)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    small, large = (results[n] for n in SIZES)
    benchmark.extra_info.update({
        "pairs": list(SIZES), "peak_anon_mib": [round(small["anon_mib"]), round(large["anon_mib"])],
        "peak_rss_incl_mapped_mib": [round(small["hwm_mib"]), round(large["hwm_mib"])],
        "anon_ratio_10x_pairs": round(large["anon_mib"] / small["anon_mib"], 3)})
