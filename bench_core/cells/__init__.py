"""Cell kinds: each module computes one kind of result row from a :class:`bench_core.workspace.Workspace`.

``evaluate(cell, workspace)`` returns a :class:`CellResult`; the unit runner turns it into a stored record.
"""

from __future__ import annotations

from bench_core.cells.common import CellResult
from bench_core.plan import Cell


def evaluate(cell: Cell, workspace) -> CellResult:
    """Compute ``cell``: dispatch on its kind."""
    from bench_core.cells import detector, evaluation, probe

    compute = {"eval": evaluation.compute, "detector": detector.compute, "probe": probe.compute}[cell.kind]
    return compute(cell, workspace)


__all__ = ["CellResult", "evaluate"]
