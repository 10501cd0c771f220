"""A worked third-party bdbench defense: median-filter input purification (see ``docs/plugin_authoring.md``)."""

from bdbench_example_defense.defense import MedianFilter, MedianFilterConfig, median_filter

__all__ = ["MedianFilter", "MedianFilterConfig", "median_filter"]
