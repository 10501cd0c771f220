"""Executors and interruptions: the quick suite gives identical stored metrics under serial, processes and Ray;
a run killed with SIGKILL during training, evaluation or a store write completes on re-run with the results of an
uninterrupted run; two runs on one home at once end consistent, each cell computed once."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench_core.cache import Cache
from bench_core.runner import Runner
from bench_core.store import ResultStore
from bench_core.suite import load_suite


def _metrics(home: Path) -> dict[str, dict[str, float]]:
    store = ResultStore(home / "results.sqlite")
    return {r.key: r.metrics for r in store.all() if r.status == "ok"}


def _quick_metrics_under(executor: str, home: Path, monkeypatch) -> dict[str, dict[str, float]]:
    monkeypatch.setenv("BDBENCH_HOME", str(home))
    suite = load_suite("quick")
    suite = suite.model_copy(update={"resources": suite.resources.model_copy(update={"torch_threads": 1})})
    runner = Runner(suite, executor=executor, jobs=2)
    counts = runner.run()
    assert counts == {"computed": len(runner.all_cells()), "skipped": 0, "failed": 0}
    return _metrics(home)


def test_serial_processes_and_ray_store_identical_metrics(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    # every unit at one torch thread (resources.torch_threads): float reductions depend on the thread count
    serial = _quick_metrics_under("serial", tmp_path / "serial", monkeypatch)
    processes = _quick_metrics_under("processes", tmp_path / "processes", monkeypatch)  # 2 workers
    ray = _quick_metrics_under("ray", tmp_path / "ray", monkeypatch)  # local Ray, num_cpus=2, 1 CPU per unit
    assert len(serial) == len(Runner(load_suite("quick")).all_cells())
    assert processes == serial
    assert ray == serial
    records = ResultStore(tmp_path / "ray" / "results.sqlite").all()
    assert all(r.schema_version == 2 and r.spec["kind"] == ("eval" if not (r.detector or r.probe) else
                                                            "detector" if r.detector else "probe")
               and r.env["torch"] and r.env["device"] == "cpu" and r.env["threads"] == 1 for r in records)


def _cli(home: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BDBENCH_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("BDBENCH_CRASH_AT", None)
    if crash:
        env["BDBENCH_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "bench_core.cli", "run", "--suite", "quick", *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, dict[str, float]]:
    home = tmp_path_factory.mktemp("reference")
    out = _cli(home)
    assert out.returncode == 0, out.stderr
    return _metrics(home)


def _check_store(home: Path, reference: dict) -> None:
    db = sqlite3.connect(home / "results.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows, distinct = db.execute("SELECT count(*), count(DISTINCT key) FROM results").fetchone()
        assert rows == distinct == len(reference)
    finally:
        db.close()
    assert _metrics(home) == reference


@pytest.mark.parametrize("point", ["train@6", "eval@3", "store@4"])
def test_kill_9_then_rerun_gives_the_uninterrupted_results(tmp_path, reference, point):
    """train@6: inside the first fine-tune (pretraining is 4 steps); eval@3: a cell computed, not yet stored;
    store@4: inside the fourth record's write transaction, before its commit."""
    killed = _cli(tmp_path, crash=point)
    assert killed.returncode == -9, killed.stderr
    partial = _metrics(tmp_path)
    assert len(partial) < len(reference) and all(reference[k] == v for k, v in partial.items())
    rerun = _cli(tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(partial)} already stored" in rerun.stderr and "damaged" not in rerun.stderr
    _check_store(tmp_path, reference)
    # every cache entry is whole: the interrupted write left no entry that reads as complete but is not
    logged = []
    cache = Cache(tmp_path / "cache", log=logged.append)
    keys = {p.stem for p in (tmp_path / "cache").rglob("*.json")}
    assert keys and all(cache.load(k) is not None for k in keys) and not logged


def test_two_concurrent_runs_on_one_home_end_consistent(tmp_path, reference):
    env = {**os.environ, "BDBENCH_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("BDBENCH_CRASH_AT", None)
    command = [sys.executable, "-m", "bench_core.cli", "run", "--suite", "quick"]
    first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    second = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    errs = [p.communicate(timeout=600)[1] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, errs
    computed = [int(re.search(r"(\d+) computed", e).group(1)) for e in errs]
    assert sum(computed) == len(reference), errs  # every cell computed exactly once between the two runs
    _check_store(tmp_path, reference)
    if min(computed) > 0:  # they overlapped: the log says who waited for whom
        assert any("held by another run" in e or "finished by another run" in e for e in errs), errs


def _run_with_a_worker_killed(home: Path, executor: str) -> subprocess.CompletedProcess:
    """The quick suite under ``executor`` with 2 workers; the first worker to reach its sixth training step (the
    last step of its first fine-tune: pretraining is 4 steps) is killed with SIGKILL, once."""
    env = {**os.environ, "BDBENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "BDBENCH_CRASH_AT": "train@6",
           "BDBENCH_CRASH_ONCE": str(home / "killed-once")}
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "bench_core.cli", "run", "--suite", "quick", "--executor",
                           executor, "--jobs", "2"], env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_a_dead_worker_costs_only_its_own_unit(tmp_path, reference, executor):
    if executor == "ray":
        pytest.importorskip("ray")
    killed = _run_with_a_worker_killed(tmp_path, executor)
    assert (tmp_path / "killed-once").exists(), killed.stderr[-3000:]
    assert killed.returncode == 1, killed.stderr[-3000:]  # the run finished, with failed cells
    records = ResultStore(tmp_path / "results.sqlite").all()
    failed = [r for r in records if r.status == "error"]
    ok = {r.key: r.metrics for r in records if r.status == "ok"}
    # one fine-tune lost: its cells fail and name the cause; every other cell was computed, as uninterrupted
    assert failed and len(failed) + len(ok) == len(reference) and len(ok) >= len(reference) // 2
    assert all(reference[k] == v for k, v in ok.items())
    if executor == "processes":
        assert all("SIGKILL" in (r.error or "") for r in failed), [r.error for r in failed]
    else:
        assert all(r.error for r in failed)
    rerun = _cli(tmp_path)  # the next run retries exactly the failed cells
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(ok)} already stored" in rerun.stderr
    assert _metrics(tmp_path) == reference
