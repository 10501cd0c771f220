"""Hook specifications: the only way plugins reach bdbench.

A plugin package exposes a module under the ``bdbench`` entry-point group (``[project.entry-points.bdbench]``)
that implements any of these hooks with ``@bench_core.hookimpl``. Hooks are called with keyword arguments,
so a spec can grow arguments without breaking implementations that take fewer.
"""

from __future__ import annotations

import pluggy

from bench_core.interfaces import Attack, Defense, Detector, Probe

PROJECT = "bdbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration --------------------------------------------------------------------------------------------

@hookspec
def bdbench_register_attacks() -> list[type[Attack]]:
    """Return the Attack classes this plugin provides (an empty list or None: none)."""


@hookspec
def bdbench_register_defenses() -> list[type[Defense]]:
    """Return the Defense classes (any stage) this plugin provides (an empty list or None: none)."""


@hookspec
def bdbench_register_detectors() -> list[type[Detector]]:
    """Return the Detector classes this plugin provides (an empty list or None: none)."""


@hookspec
def bdbench_register_probes() -> list[type[Probe]]:
    """Return the Probe classes this plugin provides (an empty list or None: none)."""


# --- reports -------------------------------------------------------------------------------------------------

@hookspec
def bdbench_metric_info() -> list:
    """Return :class:`bench_core.metrics.MetricInfo` for the metrics this plugin stores under its own names
    (a probe's summary keys, an attack's statistics): unit, better direction and a one-line definition."""


@hookspec
def bdbench_report_sections(board) -> list:
    """Return :class:`bench_core.report.Section` s built from ``board`` (a
    :class:`bench_core.leaderboard.Board`: the suite's plan and its stored results; nothing else may be read)
    — a page of its own (``page="adaptive"`` writes ``adaptive.md``) or a section of a core page
    (``page="probes"``). An empty list or None when the suite holds nothing of the plugin's."""
