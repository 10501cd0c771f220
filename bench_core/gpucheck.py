"""``python -m bench_core.gpucheck`` (``make gpu-check``): run a paper-shaped suite on one device and print
fine-tune and zero-shot images/s and the peak GPU memory.

Numbers come from the run itself: each fine-tune's steps x batch / seconds (kept in the cache metadata) and
each no-defense eval cell's ``ms_per_image``. Use a fresh ``BDBENCH_HOME``: a stored suite computes nothing.
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench_core.errors import BenchError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench_core.gpucheck")
    parser.add_argument("--suite", default="gpu_check", help="shipped suite name or YAML path (default gpu_check)")
    parser.add_argument("--device", default=None, help="override the suite's device (e.g. cpu for a dry run)")
    args = parser.parse_args(argv)
    from bench_core.runner import Runner
    from bench_core.suite import load_suite

    try:
        suite = load_suite(args.suite)
        if args.device:
            suite = suite.model_copy(update={"device": args.device})
        runner = Runner(suite)
    except BenchError as exc:
        print(f"gpucheck: error: {exc}", file=sys.stderr)
        return 2
    if runner.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runner.device)
    counts = runner.run()
    rows = []
    for unit in runner.plan.units:
        if unit.kind in ("pretrain", "finetune", "post_train"):
            hit = runner.cache.load(unit.key)
            stats = (hit[1] if hit else {}).get("stats", {})
            config = suite.pretrain if unit.kind == "pretrain" else suite.finetune
            if stats.get("seconds"):
                rows.append((unit.describe(), stats["steps"] * config.batch_size / stats["seconds"]))
    evals = [r for r in runner.store.get_many(c.key for c in runner.all_cells()).values()
             if r.status == "ok" and r.detector is None and r.probe is None and not r.defenses]
    print(f"device: {runner.device}" + (f" ({torch.cuda.get_device_name(runner.device)})"
                                        if runner.device.type == "cuda" else ""))
    print(f"cells: {counts['computed']} computed, {counts['skipped']} already stored, {counts['failed']} failed")
    for what, rate in rows:
        print(f"train  {rate:9.1f} images/s  {what}")
    for r in evals:
        print(f"zero-shot {1000 / r.cost['ms_per_image']:9.1f} images/s  [seed {r.seed}] {r.attack} clean test split")
    if runner.device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(runner.device) / 2 ** 30:.2f} GiB")
    else:
        print("peak GPU memory: n/a (not a CUDA device)")
    if not rows and not evals:
        print("nothing was computed: use a fresh BDBENCH_HOME to measure", file=sys.stderr)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
