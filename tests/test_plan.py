"""The plan: units, dependencies, counts, labels for several configurations of one plugin, and the results of a
suite's grid whichever suite computed them."""

from __future__ import annotations

import json

import yaml

from bench_core.cli import main
from bench_core.leaderboard import write_leaderboard
from bench_core.plan import expand
from bench_core.registry import default_registry
from bench_core.runner import Runner
from bench_core.suite import Suite, load_suite

QUICK = yaml.safe_load(open("bench_core/suites/quick.yaml"))


def _suite(**changes) -> Suite:
    return Suite.model_validate({**QUICK, **changes})


def test_units_come_after_their_dependencies_and_round_trip_as_json():
    plan = expand(load_suite("default"), default_registry())
    seen: set[str] = set()
    for unit in plan.units:
        assert set(unit.deps) <= seen, unit.id
        seen.add(unit.id)
    assert type(plan).model_validate_json(plan.model_dump_json()) == plan
    kinds = {u.kind for u in plan.units}
    assert kinds == {"pretrain", "attack", "gallery", "finetune", "post_train", "eval", "detector", "probe"}
    # lineage: a cell's model unit descends from its attack unit, which descends from pretraining
    by_id = {u.id: u for u in plan.units}
    cell = next(u for u in plan.units if u.kind == "eval" and u.cell.pipeline == ("cleanclip", "decomp_rep"))
    post = by_id[cell.deps[0]]
    finetune = by_id[post.deps[0]]
    assert (post.kind, finetune.kind) == ("post_train", "finetune") and finetune.chain == ()
    assert [by_id[d].kind for d in finetune.deps] == ["pretrain", "attack"]


def test_trainings_grow_with_attacks_prefixes_and_seeds_only():
    base = _suite(pipelines=[[]], detectors=[], probes=[])
    count = lambda s: expand(s, default_registry()).counts()["trainings"]  # noqa: E731
    assert count(base) == 1 + 3  # pretraining once, a fine-tune per (none, badnet, blended)
    more_cells = _suite(pipelines=[[], ["decomp_rep"], ["decomp_rep.oracle"]],
                        detectors=["strip", "decomp_det", "scale_up"], probes=["mean_ablation", "head_similarity"])
    assert count(more_cells) == count(base)  # detectors, probes, inference defenses: no training
    assert count(_suite(pipelines=[[], ["pdb"], ["pdb", "decomp_rep"], ["cleanclip"], ["cleanclip", "decomp_rep"]],
                        detectors=[], probes=[])) == 1 + 3 * 3  # prefixes: plain, pdb, cleanclip
    assert count(_suite(pipelines=[[], ["pdb"]], detectors=[], probes=[], seeds=[0, 1])) == 1 + 3 * 2 * 2


def test_plan_json_shape(capsys):
    assert main(["plan", "--suite", "quick", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ids = {u["id"] for u in data["units"]}
    assert all({"id", "kind", "deps"} <= set(u) and set(u["deps"]) <= ids for u in data["units"])
    assert data["counts"]["trainings"] == 4 and data["counts"]["cells"] == 12 and data["counts"]["stored"] == 0
    assert all(isinstance(v, int) for v in data["counts"].values())
    Runner(load_suite("quick")).run()
    assert main(["plan", "--suite", "quick", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["stored"] == 12 and data["counts"]["to_compute"] == 0
    assert {u["state"] for u in data["units"]} == {"stored"}
    assert main(["plan", "--suite", "quick"]) == 0
    assert "4 trainings, 12 cells (12 stored)" in capsys.readouterr().out


def test_results_of_a_suite_are_its_grid_whichever_suite_computed_them(capsys, tmp_path):
    narrow = dict(QUICK, name="narrow", attacks=["blended"], pipelines=[[]], detectors=[], probes=[])
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump(narrow))
    Runner(load_suite(str(path))).run()  # 2 cells, stored under suite "narrow"
    assert main(["results", "--suite", "quick", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and {r["suite"] for r in rows} == {"narrow"}
    assert {r["attack"] for r in rows} == {"none", "blended"}


SWEEP = dict(
    QUICK,
    attacks=[{"name": "badnet", "config": {"patch_size": 4}},
             {"name": "badnet", "config": {"patch_size": 4, "poison_rate": 0.2}}],
    pipelines=[[], [{"name": "pdb", "config": {"patch_size": 2}}], [{"name": "pdb", "config": {"patch_size": 3}}],
               [{"name": "pdb", "config": {"patch_size": 4}, "label": "pdb (4 px)"}]],
    detectors=[], probes=[])


def test_several_configurations_of_one_plugin_get_their_own_labelled_rows_and_columns(tmp_path):
    suite = Suite.model_validate(SWEEP)
    assert suite.attack_labels() == ["badnet", "badnet[poison_rate=0.2]"]
    assert [suite.pipeline_label(p) for p in suite.pipelines] == [
        "", "pdb[patch_size=2]", "pdb[patch_size=3]", "pdb (4 px)"]
    runner = Runner(suite)
    assert runner.plan.counts()["trainings"] == 1 + 3 * 4
    counts = runner.run()
    assert counts == {"computed": 12, "skipped": 0, "failed": 0}
    keys = [c.key for c in runner.all_cells()]
    assert len(set(keys)) == len(keys)  # two configs never share a key
    records = runner.store.get_many(keys)
    assert {r.attack for r in records.values()} == {"none", "badnet", "badnet[poison_rate=0.2]"}
    assert {r.spec["defenses"][0]["config"]["patch_size"] for r in records.values() if r.defenses} == {2, 3, 4}
    poisoned = {r.attack: r.metrics["attack_n_poison"] for r in records.values() if r.attack != "none"}
    assert poisoned == {"badnet": 5.0, "badnet[poison_rate=0.2]": 20.0}
    write_leaderboard(suite, tmp_path / "lb")
    text = (tmp_path / "lb" / "defenses.md").read_text()
    # labels are text: markdown escapes their brackets, so they render as written and never as a link
    assert "| badnet ASR / CACC" in text and "| badnet\\[poison_rate=0.2\\] ASR / CACC" in text
    for row in ("| pdb\\[patch_size=2\\]", "| pdb\\[patch_size=3\\]", "| pdb (4 px)"):
        line = next(l for l in text.splitlines() if l.startswith(row))
        assert "—" not in line and "error" not in line, line


def test_duplicate_entries_and_labels_are_clear_errors():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="lists 'blended' twice with the same settings"):
        _suite(attacks=["blended", "blended"])
    with pytest.raises(ValidationError, match="give the entries different labels"):
        _suite(attacks=[{"name": "blended", "label": "x"}, {"name": "badnet", "label": "x"}])
    with pytest.raises(ValidationError, match="label 'a|b' must be"):
        _suite(attacks=[{"name": "blended", "label": "a|b"}])
