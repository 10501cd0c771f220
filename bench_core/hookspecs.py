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
