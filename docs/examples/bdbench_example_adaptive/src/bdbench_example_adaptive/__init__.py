"""A worked example of a third-party adaptive attack and report section for bdbench."""

from bdbench_example_adaptive.attack import MedianAwarePatch

__all__ = ["MedianAwarePatch"]
