"""End-to-end on the quick suite: every cell stored, a re-run recomputes nothing, a failing cell loses nothing."""

import pytest

from bench_core import InferenceDefense, PostTrainDefense, hookimpl
from bench_core.leaderboard import write_leaderboard
from bench_core.registry import build_registry, plugin_manager
from bench_core.runner import Runner
from bench_core.store import ResultStore
from bench_core.suite import Suite, load_suite


@pytest.fixture(scope="module")
def quick_home(tmp_path_factory):
    return tmp_path_factory.mktemp("quick_home")


@pytest.fixture
def quick_run(quick_home, monkeypatch):
    monkeypatch.setenv("BDBENCH_HOME", str(quick_home))
    return Runner(load_suite("quick"))


def test_quick_suite_end_to_end(quick_run, tmp_path):
    counts = quick_run.run()
    cells = quick_run.all_cells()
    assert counts == {"computed": len(cells), "skipped": 0, "failed": 0}
    records = ResultStore().get_many(c.key for c in cells)
    assert len(records) == len(cells) and all(r.status == "ok" for r in records.values())
    evals = [r for r in records.values() if r.detector is None and r.probe is None]
    for r in evals:
        assert 0 <= r.metrics["cacc"] <= 1 and "i2t_r1" in r.metrics
        if r.attack != "none":
            assert {"asr", "asr_all_images", "ra", "attack_psnr_db"} <= set(r.metrics)
    dets = [r for r in records.values() if r.detector]
    assert dets and all(0 <= r.metrics["auroc"] <= 1 and r.cost["forward_passes_per_image"] >= 1 for r in dets)
    paths = write_leaderboard(quick_run.suite, tmp_path / "lb")
    text = (tmp_path / "lb" / "defenses.md").read_text()
    assert "config hash" in text and "| decomp_rep" in text and "badnet ASR / CACC" in text
    assert {p.name for p in paths} == {"README.md", "defenses.md", "detectors.md", "probes.md", "runs.md"}


def test_rerun_skips_everything_without_touching_data(quick_run, monkeypatch):
    quick_run.run()  # idempotent if the previous test already ran
    from bench_core.data.bundle import DataBundle

    def boom(self):
        raise AssertionError("data was generated on a fully stored re-run")

    monkeypatch.setattr(DataBundle, "finetune", property(boom))
    monkeypatch.setattr(DataBundle, "evaluation", property(boom))
    fresh = Runner(load_suite("quick"))
    counts = fresh.run()
    assert counts["computed"] == 0 and counts["failed"] == 0 and counts["skipped"] == len(fresh.all_cells())


class _Exploding(InferenceDefense):
    name = "exploding"

    def wrap(self, classifier, ctx):
        raise RuntimeError("kaboom")


class _ExplodingPlugin:
    @hookimpl
    def bdbench_register_defenses(self):
        return [_Exploding]


def test_failing_cell_is_stored_and_others_survive(tmp_path, monkeypatch):
    raw = load_suite("quick").model_dump()
    raw["pipelines"] = [[], [{"name": "exploding"}]]
    suite = Suite.model_validate(raw)
    registry = build_registry(plugin_manager(extra_plugins=(_ExplodingPlugin(),)))
    runner = Runner(suite, registry=registry)
    counts = runner.run()
    assert counts["failed"] == 3  # one per attack column (none, badnet, blended)
    records = ResultStore().all("quick")
    failed = [r for r in records if r.status == "error"]
    assert len(failed) == 3 and all("kaboom" in r.error for r in failed)
    assert sum(r.status == "ok" for r in records) == len(runner.all_cells()) - 3
    # the next run retries only the failed cells
    assert Runner(suite, registry=registry).run()["skipped"] == len(runner.all_cells()) - 3


class _Repair(PostTrainDefense):
    name = "noop_repair"

    def repair(self, model, ctx):
        return {}


class _RepairPlugin:
    @hookimpl
    def bdbench_register_defenses(self):
        return [_Repair]


def test_pipeline_out_of_stage_order_is_rejected():
    from bench_core.errors import BenchError

    registry = build_registry(plugin_manager(extra_plugins=(_RepairPlugin(),)))
    raw = load_suite("quick").model_dump()
    raw["pipelines"] = [[{"name": "decomp_rep"}, {"name": "noop_repair"}]]
    with pytest.raises(BenchError, match="out of stage order"):
        Runner(Suite.model_validate(raw), registry=registry)
