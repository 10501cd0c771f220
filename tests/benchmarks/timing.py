"""Timing helper shared by the benchmarks (ratios are measured in one run; nothing asserts a time)."""

import time


def median_seconds(fn, repeats: int = 15) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
