"""Lineage is verified, not assumed: every artifact records the content checksums of the artifacts it was built
from; a child whose parent's content changed is rebuilt, and a damaged parent recomputed gives the numbers of a
clean run."""

from __future__ import annotations

import torch

from bench_core.cache import Cache
from bench_core.keys import attack_state_key, model_key
from bench_core.runner import Runner
from bench_core.store import ResultStore
from bench_core.suite import load_suite
from bench_core.workspace import Workspace


def _run(home) -> tuple[Runner, dict[str, dict[str, float]]]:
    runner = Runner(load_suite("quick"), store=ResultStore(home / "results.sqlite"), log=lambda m: None)
    assert runner.run()["failed"] == 0
    return runner, {r.key: r.metrics for r in runner.store.all() if r.status == "ok"}


def _badnet(runner: Runner):
    return next(c.attack_spec for c in runner.plan.cells if c.attack == "badnet")


def test_artifacts_record_their_parents_checksums(tmp_path, monkeypatch):
    monkeypatch.setenv("BDBENCH_HOME", str(tmp_path))
    runner, _ = _run(tmp_path)
    cache, ws = Cache(), Workspace(runner.suite, log=lambda m: None)
    spec = _badnet(runner)
    state_key = attack_state_key(spec, ws.clean_key, 0)
    child = model_key(runner.suite.finetune, 0, ws.clean_key, state_key, ())
    parents = cache.load(child)[1]["parents"]
    assert parents == {ws.clean_key: cache.sha256(ws.clean_key), state_key: cache.sha256(state_key)}


def test_a_child_of_a_changed_parent_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("BDBENCH_HOME", str(tmp_path))
    runner, _ = _run(tmp_path)
    cache = Cache()
    spec = _badnet(runner)
    ws = Workspace(runner.suite, log=lambda m: None)
    state_key = attack_state_key(spec, ws.clean_key, 0)
    child = model_key(runner.suite.finetune, 0, ws.clean_key, state_key, ())
    before = cache.load(child)[0]
    # the parent now holds other valid content (as a recomputation with another outcome would leave it)
    state, meta = cache.load(state_key)
    cache.save(state_key, {k: (1 - v) if v.is_floating_point() else v for k, v in state.items()}, meta)
    logs: list[str] = []
    Workspace(runner.suite, log=logs.append).model(0, spec, ())
    assert any(m.startswith("lineage:") and child[:12] in m for m in logs), logs
    after, meta = cache.load(child)
    assert meta["parents"][state_key] == cache.sha256(state_key)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained on the new trigger


def test_a_damaged_parent_is_recomputed_and_the_numbers_match_a_clean_run(tmp_path, monkeypatch):
    monkeypatch.setenv("BDBENCH_HOME", str(tmp_path))
    runner, reference = _run(tmp_path)
    cache = Cache()
    spec = _badnet(runner)
    state_key = attack_state_key(spec, Workspace(runner.suite).clean_key, 0)
    path = cache.root / state_key[:2] / f"{state_key}.safetensors"
    path.write_bytes(path.read_bytes()[:-7])  # damaged: recomputed on next use
    (tmp_path / "results.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"results.sqlite{suffix}").unlink(missing_ok=True)
    _, again = _run(tmp_path)
    assert again == reference
    assert cache.load(state_key) is not None
