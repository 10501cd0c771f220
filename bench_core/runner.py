"""The driver: plans a suite, hands ready units to an executor, stores every cell as its record comes back.

A run computes only what is missing: cells without an ``ok`` row, and the artifacts those cells need that the
cache does not hold. A unit runs once its dependencies are done; the driver holds the unit's lock
(:mod:`bench_core.locks`) from hand-out to storage, so a second run on the same home waits for it and then skips
it. A failing cell is stored with status ``error`` and the run goes on; a failing artifact unit (a diverged
fine-tune, say) fails every cell downstream of it, each stored as an error naming the unit. Interrupted at any
moment, a run loses nothing finished: cells are stored one transaction each, cache entries are written whole or
not at all, and the next run picks up where this one stopped.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from bench_core.cache import Cache, bdbench_home
from bench_core.errors import BenchError
from bench_core.executors import EXECUTORS, ProcessExecutor, RayExecutor, SerialExecutor, cpu_count, visible_gpus
from bench_core.locks import UnitLocks
from bench_core.models import pick_device
from bench_core.plan import Cell, Plan, Unit, expand
from bench_core.registry import PluginRegistry, default_registry
from bench_core.store import ResultStore
from bench_core.suite import Suite
from bench_core.units import cell_record
from bench_core.validate import check_home, check_plan
from bench_core.workspace import Workspace

POLL_SECONDS = 0.5


class Runner:
    """Runs one suite's plan against a registry, a cache and a results store."""

    def __init__(self, suite: Suite, registry: PluginRegistry | None = None, store: ResultStore | None = None,
                 cache: Cache | None = None, log: Callable[[str], None] | None = None, *,
                 executor: str = "serial", jobs: int | None = None, address: str | None = None,
                 validate: bool = True):
        if executor not in EXECUTORS:
            from bench_core.errors import unknown_name_error
            raise unknown_name_error("executor", executor, EXECUTORS)
        if jobs is not None and jobs < 1:
            raise BenchError(f"--jobs {jobs} is not a worker count; allowed: 1 or more")
        if validate:
            check_home()
        self.suite = suite
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.plan: Plan = expand(suite, registry or default_registry())
        if validate:
            check_plan(self.plan)
        self.store = store or ResultStore()  # opened after planning: a bad suite leaves no trace in the home
        self.cache = cache or Cache(log=self.log)
        self.executor_name, self.jobs, self.address = executor, jobs, address
        self.device = pick_device(suite.device)

    def all_cells(self) -> list[Cell]:
        return self.plan.cells

    def pending(self) -> tuple[list[Unit], set[str]]:
        """The units this run must compute (in plan order) and the keys of cells already stored."""
        plan = self.plan
        stored = self.store.done_keys(c.key for c in plan.cells)
        by_id = {u.id: u for u in plan.units}
        needed: set[str] = set()
        stack = [u.id for u in plan.units if (u.is_cell and u.key not in stored)
                 or (u.kind == "gallery" and not self.cache.has(u.key))]
        while stack:
            uid = stack.pop()
            if uid in needed:
                continue
            unit = by_id[uid]
            if not unit.is_cell and self.cache.has(unit.key):
                continue  # already computed: its own dependencies are not needed either
            needed.add(uid)
            stack.extend(unit.deps)
        return [u for u in plan.units if u.id in needed], stored

    def _executor(self, workspace: Workspace):
        name = self.executor_name
        threads = self.suite.resources.torch_threads
        if name == "serial":
            return SerialExecutor(workspace, threads)
        suite_json = self.suite.model_dump_json()
        home = str(bdbench_home().resolve())
        cuda = self.device.type == "cuda"
        if name == "processes":
            jobs = self.jobs or (len(visible_gpus()) if cuda else cpu_count())
            return ProcessExecutor(suite_json, home, jobs, cuda, self.log, threads)
        res = self.suite.resources
        gpus = res.gpus_per_unit if res.gpus_per_unit is not None else (1.0 if cuda else 0.0)
        return RayExecutor(suite_json, home, self.address, res.cpus_per_unit, gpus, self.log, local_cpus=self.jobs,
                           threads=threads)

    def run(self) -> dict[str, int]:
        """Compute every pending cell; returns counts of cells computed, skipped (stored) and failed."""
        units, stored = self.pending()
        counts = {"computed": 0, "skipped": len(stored), "failed": 0}
        if not units:
            return counts
        workspace = Workspace(self.suite, self.cache, self.log)
        _Drive(self, units, workspace, counts).run()
        return counts


class _Drive:
    """One run's bookkeeping: unit states, locks, hand-out and storage."""

    def __init__(self, runner: Runner, units: list[Unit], workspace: Workspace, counts: dict[str, int]):
        self.r, self.units, self.ws, self.counts = runner, units, workspace, counts
        self.by_id = {u.id: u for u in units}
        self.waiting = list(units)  # plan order
        self.state: dict[str, str] = {}  # id -> running | ok | failed
        self.handles: dict[str, object] = {}
        self.announced: set[str] = set()
        self.locks = UnitLocks(bdbench_home())
        self.dependants: dict[str, list[str]] = {}
        for u in units:
            for d in u.deps:
                if d in self.by_id:
                    self.dependants.setdefault(d, []).append(u.id)

    def run(self) -> None:
        executor = self.r._executor(self.ws)
        try:
            while self.waiting or any(s == "running" for s in self.state.values()):
                started = self._hand_out(executor)
                running = any(s == "running" for s in self.state.values())
                if not running:
                    if not self.waiting:
                        break
                    time.sleep(POLL_SECONDS)  # every ready unit is held by another run
                    continue
                for _, outcome in executor.wait(0.0 if started and self.r.executor_name == "serial"
                                                else POLL_SECONDS):
                    self._finish(self.by_id[outcome.unit], outcome)
        finally:
            executor.close()
            self.locks.release_all()

    def _ready(self, unit: Unit) -> bool:
        return all(self.state.get(d) == "ok" for d in unit.deps if d in self.by_id)

    def _hand_out(self, executor) -> bool:
        started = False
        for unit in list(self.waiting):
            if unit.id in self.state or not self._ready(unit):
                continue
            if not self.locks.try_acquire(unit.key):
                if unit.id not in self.announced:
                    self.announced.add(unit.id)
                    self.r.log(f"waiting: {unit.describe()} is held by another run on this home")
                continue
            self.waiting.remove(unit)
            if self._done_elsewhere(unit):
                self.r.log(f"skipping: {unit.describe()} was finished by another run")
                self.state[unit.id] = "ok"
                self.counts["skipped"] += unit.is_cell
                self.locks.release(unit.key)
                continue
            self.state[unit.id] = "running"
            deps = [self.handles[d] for d in unit.deps if d in self.handles]
            self.handles[unit.id] = executor.submit(unit, deps)
            started = True
            if self.r.executor_name == "serial":
                return True  # collect the outcome (stored at once) before running the next unit
        return started

    def _done_elsewhere(self, unit: Unit) -> bool:
        return self.r.store.done(unit.key) if unit.is_cell else self.r.cache.has(unit.key)

    def _finish(self, unit: Unit, outcome) -> None:
        try:
            if unit.is_cell:
                record = outcome.record
                if record is None:  # its worker died or its task was lost: nothing came back but the error
                    record = cell_record(unit.cell, self.r.suite, self.ws.device, "error",
                                         error=outcome.error or "the unit returned no record")
                self.r.store.put(record)
                self.counts["computed" if outcome.ok else "failed"] += 1
            if outcome.ok:
                self.state[unit.id] = "ok"
                return
            self.state[unit.id] = "failed"
            if not unit.is_cell:
                self.r.log(f"  FAILED {unit.describe()}: {outcome.error}")
                self._fail_downstream(unit, outcome.error)
        finally:
            self.locks.release(unit.key)

    def _fail_downstream(self, failed: Unit, error: str | None) -> None:
        """Every unit depending on ``failed`` fails too; its cells are stored as errors naming the cause."""
        stack = list(self.dependants.get(failed.id, []))
        while stack:
            uid = stack.pop()
            if self.state.get(uid) == "failed":
                continue
            unit = self.by_id[uid]
            self.state[uid] = "failed"
            if unit in self.waiting:
                self.waiting.remove(unit)
            if unit.is_cell:
                self.r.store.put(cell_record(unit.cell, self.r.suite, self.ws.device, "error",
                                             error=f"upstream unit failed: {failed.describe()}: {error}"))
                self.counts["failed"] += 1
            stack.extend(self.dependants.get(uid, []))
