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


def _worker_main(conn, home: str, threads: int, gpu: str | None) -> None:
    """A worker process: set up the environment before torch is imported, then run the units it is sent (a
    JSON unit in, an outcome dict out) until it receives None."""
    os.environ["BDBENCH_HOME"] = home
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    torch.set_num_threads(threads)
    from bench_core.units import run_unit_json

    while True:
        message = conn.recv()
        if message is None:
            return
        suite_json, unit_json = message
        conn.send(run_unit_json(suite_json, unit_json))


def death_cause(exitcode: int | None) -> str:
    """``killed by signal SIGKILL`` / ``exited with code 1`` for a worker's exit code."""
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class _Worker:
    def __init__(self, ctx, home: str, threads: int, gpu: str | None):
        self.gpu = gpu
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, home, threads, gpu), daemon=True)
        self.process.start()
        child.close()
        self.unit: str | None = None  # the unit it is running


class ProcessExecutor:
    """N spawned worker processes; each keeps its workspace (data, models) across the units it runs. A worker
    that dies (killed, out of memory) costs only the unit it was running — reported as that unit's error,
    naming the signal — and is replaced by a fresh one; the other workers and the queued units go on."""

    def __init__(self, suite_json: str, home: str, jobs: int, cuda: bool, log, threads: int | None = None):
        self.ctx = multiprocessing.get_context("spawn")
        gpus: list[str | None] = [None] * jobs
        if cuda:
            visible = visible_gpus()
            if jobs > len(visible):
                raise BenchError(f"--jobs {jobs} asks for more workers than the {len(visible)} visible GPU(s) "
                                 f"({', '.join(visible)}); allowed: 1..{len(visible)}")
            gpus = list(visible[:jobs])
            threads = threads or max(1, cpu_count() // jobs)
            log(f"processes: {jobs} workers, one per GPU ({', '.join(visible[:jobs])}), {threads} threads each")
        else:
            threads = threads or max(1, cpu_count() // jobs)
            log(f"processes: {jobs} workers on the CPU, {threads} torch thread(s) each ({cpu_count()} cores)")
        self.suite_json, self.home, self.threads, self.log = suite_json, home, threads, log
        self.workers = [_Worker(self.ctx, home, threads, gpu) for gpu in gpus]
        self.queue: list[tuple[str, str]] = []  # (unit id, unit JSON) not yet sent to a worker

    def submit(self, unit: Unit, deps: list[Any]) -> Any:
        self.queue.append((unit.id, unit.model_dump_json()))
        self._dispatch()
        return unit.id

    def _dispatch(self) -> None:
        for worker in self.workers:
            if worker.unit is None and self.queue:
                unit_id, unit_json = self.queue.pop(0)
                worker.unit = unit_id
                try:
                    worker.conn.send((self.suite_json, unit_json))
                except (BrokenPipeError, OSError):
                    pass  # it died before this send; wait() reports the unit and replaces the worker

    def wait(self, timeout: float) -> list[tuple[Any, Outcome]]:
        from multiprocessing.connection import wait as wait_any

        busy = [w for w in self.workers if w.unit is not None]
        if not busy:
            return []
        ready = set(wait_any([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=timeout))
        out = []
        for i, worker in enumerate(self.workers):
            if worker.unit is None or not (worker.conn in ready or worker.process.sentinel in ready):
                continue
            unit_id, outcome = worker.unit, None
            try:
                if worker.conn.poll():
                    outcome = Outcome.model_validate(worker.conn.recv())
            except (EOFError, OSError):
                outcome = None
            if outcome is None and not worker.process.is_alive():
                worker.process.join()
                cause = death_cause(worker.process.exitcode)
                self.log(f"processes: the worker running {unit_id} was {cause}; replacing it")
                outcome = Outcome(unit=unit_id, ok=False, error=f"worker process {cause} while running this unit")
                worker.conn.close()
                self.workers[i] = _Worker(self.ctx, self.home, self.threads, worker.gpu)
            elif outcome is None:
                continue  # a spurious wake-up: the worker is alive and has not answered yet
            else:
                worker.unit = None
            out.append((unit_id, outcome))
        self._dispatch()
        return out

    def close(self) -> None:
        for worker in self.workers:
            try:
                if worker.unit is None:
                    worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self.workers:
            worker.process.join(timeout=5 if worker.unit is None else 0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()


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
