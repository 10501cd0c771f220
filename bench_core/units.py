"""Running one work unit: the function every executor calls, in-process, in a worker process or as a Ray task.

``run_unit(unit, workspace)`` never raises. An artifact unit (pretrain, attack, finetune, post_train) makes
sure its cache entry exists; a cell unit computes its cell and returns the record for the driver to store.
A failure — an exception, a diverged training run, a metric that is not finite — comes back as an ``error``
outcome (a cell's as an ``error`` record), never as a number.
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from bench_core import __version__ as CORE_VERSION
from bench_core.cells import evaluate
from bench_core.environment import environment
from bench_core.faults import crash_point
from bench_core.plan import Cell, Unit
from bench_core.store import ResultRecord
from bench_core.suite import Suite
from bench_core.workspace import Workspace


class Outcome(BaseModel):
    """What a unit hands back: ok or not, the error, the cell's record (cell units) and the time it took."""

    model_config = ConfigDict(extra="forbid")

    unit: str
    ok: bool
    error: str | None = None
    record: ResultRecord | None = None
    seconds: float = 0.0


def run_unit(unit: Unit, ws: Workspace) -> Outcome:
    started = time.perf_counter()
    try:
        if unit.is_cell:
            record = _cell_record(unit.cell, ws)
            return Outcome(unit=unit.id, ok=record.status == "ok", error=record.error, record=record,
                           seconds=time.perf_counter() - started)
        _make_artifact(unit, ws)
        return Outcome(unit=unit.id, ok=True, seconds=time.perf_counter() - started)
    except Exception as exc:  # an artifact unit failed: its dependants will report it
        return Outcome(unit=unit.id, ok=False, error=f"{type(exc).__name__}: {exc}",
                       seconds=time.perf_counter() - started)


def _make_artifact(unit: Unit, ws: Workspace) -> None:
    if unit.kind == "pretrain":
        ws.clean_model()
    elif unit.kind == "attack":
        ws.attack(unit.attack, unit.seed)
    elif unit.kind == "gallery":
        ws.gallery(unit.attack, unit.seed, unit.key)
    else:
        ws.model(unit.seed, unit.attack, unit.chain)


def _cell_record(cell: Cell, ws: Workspace) -> ResultRecord:
    started = time.perf_counter()
    try:
        torch.manual_seed(cell.seed)  # no cell may depend on what ran before it in this process
        result = evaluate(cell, ws)
        values = {**result.metrics, **result.cost}
        bad = sorted(k for k, v in values.items() if not math.isfinite(v))
        if bad:
            raise ArithmeticError(f"not finite: {', '.join(f'{k}={values[k]}' for k in bad)}")
        crash_point("eval")
        return cell_record(cell, ws.suite, ws.device, "ok", metrics=result.metrics, cost=result.cost,
                           payload=result.payload, versions=result.versions)
    except Exception as exc:  # one failing cell must not lose the others
        ws.log(f"  FAILED {cell.describe()}: {type(exc).__name__}: {exc}")
        return cell_record(cell, ws.suite, ws.device, "error", cost={"seconds": time.perf_counter() - started},
                           error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")


def cell_record(cell: Cell, suite: Suite, device: torch.device, status: str, *, metrics: dict | None = None,
                cost: dict | None = None, payload: dict | None = None, versions: dict | None = None,
                error: str | None = None) -> ResultRecord:
    """The stored row of ``cell``: its labels, full spec, numbers and the environment it was computed in."""
    return ResultRecord(key=cell.key, suite=suite.name, model=suite.model.label, attack=cell.attack,
                        defenses=list(cell.pipeline), detector=cell.detector, probe=cell.probe, seed=cell.seed,
                        status=status, metrics=metrics or {}, cost=cost or {}, payload=payload or {},
                        config_hash=suite.config_hash(), versions=versions or {"bench_core": CORE_VERSION},
                        error=error, spec=cell.spec(), env=environment(device))


def run_unit_json(suite_json: str, unit_json: str) -> dict[str, Any]:
    """:func:`run_unit` across a process boundary: JSON in, a plain dict out (workers and Ray tasks)."""
    ws = worker_workspace(suite_json)
    return run_unit(Unit.model_validate_json(unit_json), ws).model_dump(mode="json")


_WORKSPACES: dict[str, Workspace] = {}


def worker_workspace(suite_json: str) -> Workspace:
    """This process's workspace for the suite (kept across units, so data and models load once)."""
    if suite_json not in _WORKSPACES:
        _WORKSPACES.clear()  # one suite at a time per worker
        _WORKSPACES[suite_json] = Workspace(Suite.model_validate_json(suite_json))
    return _WORKSPACES[suite_json]
