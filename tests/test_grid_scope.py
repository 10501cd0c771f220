"""Grid entries scoped to some attacks: parsing, clear errors, the cells the runner expands, the leaderboard."""

import pytest
import yaml

from bench_core.errors import BenchError
from bench_core.leaderboard import NOT_RUN, write_leaderboard
from bench_core.runner import Runner
from bench_core.suite import PipelineRef, Suite, load_suite

QUICK = "bench_core/suites/quick.yaml"


def _quick(**changes) -> Suite:
    raw = yaml.safe_load(open(QUICK))
    raw.update(changes)
    return Suite.model_validate(raw)


def test_pipeline_accepts_the_plain_list_and_the_scoped_mapping():
    plain = PipelineRef.model_validate(["decomp_rep"])
    scoped = PipelineRef.model_validate({"defenses": ["decomp_rep"], "attacks": ["badnet"]})
    assert plain.defenses == scoped.defenses and plain.attacks is None and scoped.attacks == ["badnet"]
    assert Suite(name="s", pipelines=[[]]).pipeline_label(PipelineRef.model_validate([])) == ""


def test_a_scoped_suite_expands_only_the_listed_attacks_and_keeps_every_cell_key():
    wide = Runner(load_suite("quick"))
    narrow = Runner(_quick(
        pipelines=[[], {"defenses": ["decomp_rep"], "attacks": ["none", "blended"]}],
        detectors=[{"name": "strip", "config": {"n_blends": 4}, "attacks": ["badnet"]}, "decomp_det"],
        probes=[{"name": "mean_ablation", "attacks": ["blended"]}]))
    cells = narrow.all_cells()
    assert {(c.attack, c.pipeline) for c in cells if c.kind == "eval"} == {
        ("none", ()), ("badnet", ()), ("blended", ()), ("none", ("decomp_rep",)), ("blended", ("decomp_rep",))}
    assert {(c.attack, c.detector) for c in cells if c.kind == "detector"} == {
        ("badnet", "strip"), ("badnet", "decomp_det"), ("blended", "decomp_det")}
    assert {c.attack for c in cells if c.kind == "probe"} == {"blended"}
    # a narrower grid reads and writes the very cells of the wider one
    assert {c.key for c in cells} < {c.key for c in wide.all_cells()}


@pytest.mark.parametrize("where, entry, message", [
    ("pipelines", {"defenses": ["decomp_rep"], "attacks": ["badnett"]}, "did you mean 'badnet'"),
    ("pipelines", {"defenses": ["decomp_rep"], "attacks": []}, "attacks is empty"),
    ("detectors", {"name": "decomp_det", "attacks": ["none"]}, "'none', which this suite does not run"),
    ("probes", {"name": "mean_ablation", "attacks": ["issba"]}, "allowed: badnet, blended"),
    ("probes", {"name": "mean_ablation", "attacks": ["badnet", "badnet"]}, "twice"),
])
def test_scoping_to_an_attack_the_suite_does_not_run_is_a_clear_error(tmp_path, where, entry, message):
    raw = yaml.safe_load(open(QUICK))
    raw[where] = [entry]
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(BenchError, match=message):
        load_suite(str(path))


def test_the_leaderboard_says_which_cells_the_grid_leaves_out(tmp_path):
    suite = _quick(pipelines=[[], {"defenses": ["decomp_rep"], "attacks": ["badnet"]}],
                   detectors=[{"name": "decomp_det", "attacks": ["blended"]}], probes=[])
    runner = Runner(suite)
    counts = runner.run()
    assert counts == {"computed": len(runner.all_cells()), "skipped": 0, "failed": 0}
    write_leaderboard(suite, tmp_path / "lb")
    defenses = (tmp_path / "lb" / "defenses.md").read_text()
    row = next(line for line in defenses.splitlines() if line.startswith("| decomp_rep"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == NOT_RUN and cells[3] == NOT_RUN and NOT_RUN not in cells[2] and "/" in cells[2]
    assert "decomp_rep (badnet); decomp_det (blended)" in defenses
    detectors = (tmp_path / "lb" / "detectors.md").read_text()
    row = next(line for line in detectors.splitlines() if line.startswith("| decomp_det"))
    assert [c.strip() for c in row.strip("|").split("|")][1] == NOT_RUN
