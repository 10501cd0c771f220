"""Executors: where units run. The driver (:mod:`bench_core.runner`) hands each ready unit to one and collects
outcomes; only the driver writes the results store.

- ``serial``: in the driver's own process, one unit after another (the default).
- ``processes``: N local worker processes (spawned). With CUDA GPUs, one worker per visible GPU, each pinned to
  its own through ``CUDA_VISIBLE_DEVICES``; on a CPU the cores are divided among the workers (torch threads =
  cores // N), so N workers never oversubscribe the machine.
- ``ray``: each unit is a Ray task with ``num_cpus`` / ``num_gpus`` from the suite's ``resources``; the
  upstream units' results are passed as ObjectRefs; artifacts travel through the content-addressed cache, which
  must be a path every node sees (``$BDBENCH_HOME``). ``pip install 'bench-core[ray]'``.

Every executor runs the same function, :func:`bench_core.units.run_unit`, so the same suite gives identical
stored metrics under each at the same number of torch threads per unit (floating-point reductions depend on
it): ``resources.torch_threads`` pins that number for every executor.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Any, Protocol

from bench_core.errors import BenchError
from bench_core.plan import Unit
from bench_core.units import Outcome

EXECUTORS = ("serial", "processes", "ray")


class Executor(Protocol):
    def submit(self, unit: Unit, deps: list[Any]) -> Any:
        """Start ``unit`` (its dependencies are done); returns a handle the executor knows it by."""

    def wait(self, timeout: float) -> list[tuple[Any, Outcome]]:
        """Outcomes of units that finished since the last call (waits up to ``timeout`` for the first)."""

    def close(self) -> None: ...


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class SerialExecutor:
    """Runs each unit in this process when it is submitted."""

    def __init__(self, workspace, threads: int | None = None):
        self.ws = workspace
        self.threads = threads
        self._done: list[tuple[Any, Outcome]] = []

    def submit(self, unit: Unit, deps: list[Any]) -> Any:
        import torch

        from bench_core.units import run_unit

        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            self._done.append((unit.id, run_unit(unit, self.ws)))
        finally:
            torch.set_num_threads(before)
        return unit.id

    def wait(self, timeout: float) -> list[tuple[Any, Outcome]]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        pass


def _init_worker(home: str, threads: int, gpus: Any) -> None:
    """Runs first in each worker process, before torch is imported there."""
    os.environ["BDBENCH_HOME"] = home
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())
    import torch

    torch.set_num_threads(threads)


def _run_in_worker(suite_json: str, unit_json: str) -> dict:
    from bench_core.units import run_unit_json

    return run_unit_json(suite_json, unit_json)


class ProcessExecutor:
    """N spawned worker processes; each keeps its workspace (data, models) across the units it runs."""

    def __init__(self, suite_json: str, home: str, jobs: int, cuda: bool, log, threads: int | None = None):
        ctx = multiprocessing.get_context("spawn")
        gpus = None
        if cuda:
            visible = visible_gpus()
            if jobs > len(visible):
                raise BenchError(f"--jobs {jobs} asks for more workers than the {len(visible)} visible GPU(s) "
                                 f"({', '.join(visible)}); allowed: 1..{len(visible)}")
            gpus = ctx.Queue()
            for gpu in visible[:jobs]:
                gpus.put(gpu)
            threads = threads or max(1, cpu_count() // jobs)
            log(f"processes: {jobs} workers, one per GPU ({', '.join(visible[:jobs])}), {threads} threads each")
        else:
            threads = threads or max(1, cpu_count() // jobs)
            log(f"processes: {jobs} workers on the CPU, {threads} torch thread(s) each ({cpu_count()} cores)")
        self.suite_json = suite_json
        self.pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                           initargs=(home, threads, gpus))
        self._running: dict[cf.Future, str] = {}

    def submit(self, unit: Unit, deps: list[Any]) -> Any:
        future = self.pool.submit(_run_in_worker, self.suite_json, unit.model_dump_json())
        self._running[future] = unit.id
        return unit.id

    def wait(self, timeout: float) -> list[tuple[Any, Outcome]]:
        if not self._running:
            return []
        done, _ = cf.wait(list(self._running), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for future in done:
            unit_id = self._running.pop(future)
            try:
                outcome = Outcome.model_validate(future.result())
            except Exception as exc:  # the worker died (killed, out of memory): the unit failed
                outcome = Outcome(unit=unit_id, ok=False, error=f"worker process failed: {type(exc).__name__}: {exc}")
            out.append((unit_id, outcome))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def visible_gpus() -> list[str]:
    import torch

    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        return [g.strip() for g in env.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def _ray_task(suite_json: str, unit_json: str, home: str, threads: int, *upstream: dict) -> dict:
    """A Ray task: ``upstream`` are the dependencies' outcomes, resolved by Ray from ObjectRefs (the artifacts
    themselves are read from the shared cache)."""
    os.environ["BDBENCH_HOME"] = home
    import torch

    torch.set_num_threads(threads)
    from bench_core.units import run_unit_json

    return run_unit_json(suite_json, unit_json)


class RayExecutor:
    """Units as Ray tasks on a local Ray (``address`` None) or a cluster (``auto`` or ``HOST:PORT``)."""

    def __init__(self, suite_json: str, home: str, address: str | None, num_cpus: float, num_gpus: float,
                 log, local_cpus: int | None = None, threads: int | None = None):
        try:
            import ray
        except ImportError:
            raise BenchError("executor 'ray' needs Ray: pip install 'bench-core[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                      "ignore_reinit_error": True}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = local_cpus or cpu_count()
            ray.init(**kwargs)
            self._owns = True
        else:
            self._owns = False
        self.task = ray.remote(_ray_task).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)
        self.suite_json, self.home, self.threads = suite_json, home, threads or max(1, int(num_cpus))
        self._running: dict[Any, str] = {}
        log(f"ray: {ray.cluster_resources().get('CPU', 0):.0f} CPUs, {ray.cluster_resources().get('GPU', 0):.0f} "
            f"GPUs; {num_cpus:g} CPU / {num_gpus:g} GPU per unit")

    def submit(self, unit: Unit, deps: list[Any]) -> Any:
        ref = self.task.remote(self.suite_json, unit.model_dump_json(), self.home, self.threads, *deps)
        self._running[ref] = unit.id
        return ref

    def wait(self, timeout: float) -> list[tuple[Any, Outcome]]:
        if not self._running:
            return []
        done, _ = self.ray.wait(list(self._running), num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            unit_id = self._running.pop(ref)
            try:
                outcome = Outcome.model_validate(self.ray.get(ref))
            except Exception as exc:  # the task's worker died
                outcome = Outcome(unit=unit_id, ok=False, error=f"ray task failed: {type(exc).__name__}: {exc}")
            out.append((ref, outcome))
        return out

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()
