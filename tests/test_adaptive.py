"""Adaptive attacks: suites pair them with their targets, they get what they declared and nothing more, the
keys follow the target, contamination reaches the defender's data only, and the adaptive report's verdicts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench_core.cache import Cache
from bench_core.errors import BenchError
from bench_core.keys import NO_ATTACK
from bench_core.plan import expand
from bench_core.registry import default_registry
from bench_core.report import Stat, render_markdown
from bench_core.stress import applicable_attacks, stress_suite
from bench_core.suite import Suite, load_suite
from bench_core.workspace import Workspace
from conftest import make_context

QUICK = load_suite("quick").model_dump(mode="json", exclude_none=True)


def suite(attacks, pipelines=([],), detectors=(), **extra) -> Suite:
    return Suite.model_validate({**QUICK, "name": "adaptive_test", "attacks": list(attacks),
                                 "pipelines": list(pipelines), "detectors": list(detectors), "probes": [], **extra})


BADNET = {"name": "badnet", "config": {"patch_size": 4}}


def test_targets_must_name_a_defense_or_detector_of_the_suite():
    with pytest.raises(ValueError, match=r"targets lists 'pbd'.*did you mean 'pdb'"):
        suite([BADNET, {"name": "pdb_collision", "targets": ["pbd"]}], pipelines=[[], ["pdb"]])
    with pytest.raises(ValueError, match="only attacks take it"):
        suite([BADNET], detectors=[{"name": "strip", "targets": ["strip"]}])
    with pytest.raises(BenchError, match="is adaptive: list the defenses or detectors"):
        expand(suite([BADNET, "pdb_collision"], pipelines=[[], ["pdb"]]), default_registry())
    with pytest.raises(BenchError, match="is not adaptive"):
        expand(suite([{**BADNET, "targets": ["pdb"]}], pipelines=[[], ["pdb"]]), default_registry())


def test_an_adaptive_attack_runs_against_its_targets_and_no_defense_only():
    s = suite([BADNET, {"name": "pdb_collision", "targets": ["pdb"]},
               {"name": "detector_aware", "targets": ["strip"]}],
              pipelines=[[], ["pdb"], ["decomp_rep"]], detectors=["strip", "decomp_det"])
    cells = expand(s, default_registry()).cells
    grid = {(c.attack, c.kind, c.pipeline, c.detector) for c in cells}
    assert {(c.kind, c.pipeline, c.detector) for c in cells if c.attack == "pdb_collision"} == {
        ("eval", (), None), ("eval", ("pdb",), None)}
    assert {(c.kind, c.pipeline, c.detector) for c in cells if c.attack == "detector_aware"} == {
        ("eval", (), None), ("detector", (), "strip")}
    assert ("badnet", "detector", (), "decomp_det") in grid and ("badnet", "eval", ("decomp_rep",), None) in grid


def test_keys_follow_the_target_and_plain_keys_do_not_move():
    def keys(pdb_config):
        s = suite([BADNET, {"name": "pdb_collision", "targets": ["pdb"]}],
                  pipelines=[[], [{"name": "pdb", "config": pdb_config}]])
        plan = expand(s, default_registry())
        return ({u.kind + ":" + (u.attack.label if u.attack else NO_ATTACK): u.key for u in plan.units
                 if not u.chain}, {(c.attack, c.pipeline): c.key for c in plan.cells})
    units_a, cells_a = keys({})
    units_b, cells_b = keys({"patch_size": 3})
    assert units_a["attack:pdb_collision"] != units_b["attack:pdb_collision"]  # re-prepared for a changed defense
    assert units_a["finetune:pdb_collision"] != units_b["finetune:pdb_collision"]
    assert cells_a[("pdb_collision", ())] != cells_b[("pdb_collision", ())]
    assert units_a["attack:badnet"] == units_b["attack:badnet"] and cells_a[("badnet", ())] == cells_b[("badnet", ())]
    # a plain attack's cell in a suite with adaptive entries is the very cell of a suite without them
    plain = expand(suite([BADNET]), default_registry()).cells
    assert {c.key for c in plain if c.attack == "badnet"} <= set(cells_a.values())


def _workspace(s: Suite, tmp_path) -> Workspace:
    return Workspace(s, Cache(tmp_path / "cache"), log=lambda msg: None)


def test_an_attack_is_handed_the_fields_it_declared_and_the_plugin_only_when_white_box(tmp_path):
    s = suite([{"name": "pdb_h_aware", "targets": ["pdb"]}, {"name": "badclip_robust", "targets": ["cleanclip"],
                                                             "config": {"patch_size": 4}}],
              pipelines=[[], [{"name": "pdb", "config": {"shift": 3}}], ["cleanclip"]])
    plan = expand(s, default_registry())
    ws = _workspace(s, tmp_path)
    h_aware, robust = plan.attacks
    (pdb,) = ws.targets(h_aware)
    assert pdb.name == "pdb" and pdb.config == {"shift": 3} and pdb.plugin is None  # h, not Δ1
    (cleanclip,) = ws.targets(robust)
    assert cleanclip.stage == "post_train" and cleanclip.plugin is not None and cleanclip.plugin.name == "cleanclip"
    assert set(cleanclip.config) == set(cleanclip.plugin.config.model_dump())


def test_contamination_reaches_the_defenders_data_only(tmp_path):
    s = suite([{"name": "reference_contamination", "label": "rc", "targets": ["decomp_rep", "cleanclip"],
                "config": {"patch_size": 4, "contamination_rate": 0.25}}],
              pipelines=[[], ["decomp_rep"], ["cleanclip"]])
    plan = expand(s, default_registry())
    ws = _workspace(s, tmp_path)
    attack = plan.attacks[0]
    clean = ws.data.reference
    seen = ws.context(0, frozenset({"clean_reference", "heldout"}), attack)
    changed = (seen.clean_reference != clean).flatten(1).any(1)
    assert int(changed.sum()) == round(0.25 * len(clean))
    heldout = seen.heldout
    rows = [i for i, (a, b) in enumerate(zip(heldout.captions, ws.data.heldout.captions)) if a != b]
    assert 0 < len(rows) <= round(0.25 * len(heldout))
    target = ws.data.classnames[attack.target_class]
    assert all(target in heldout.captions[i] for i in rows)
    # no attack, or the attack's own context: the clean data as it is
    assert torch.equal(ws.context(0, frozenset({"clean_reference"})).clean_reference, clean)
    assert torch.equal(ws.context(0, frozenset({"clean_reference"}), plan.attacks[0]).clean_reference[~changed],
                       clean[~changed])


def test_decomp_evasion_penalty_has_a_gradient_and_training_lowers_it(tiny_model):
    import copy

    from bdbench_adaptive.decomp_evasion import DecompEvasionConfig, HeadPrototypePenalty

    model = copy.deepcopy(tiny_model).train()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(24, 3, 16, 16, generator=g)
    images[:8, :, :4, :4] = 1.0  # the "triggered" rows
    poisoned = torch.zeros(24, dtype=torch.bool)
    poisoned[:8] = True
    penalty = HeadPrototypePenalty(poisoned, DecompEvasionConfig(patch_size=4, penalty_weight=1.0, tau_quantile=0.9))
    rows = torch.arange(24)
    zero = penalty(model, images[8:], None, torch.zeros(16, 4), None, rows=rows[8:])
    assert float(zero) == 0  # no poisoned row in the batch: no term
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    values = []
    for _ in range(15):
        loss = penalty(model, images, None, torch.zeros(24, 4), None, rows=rows)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(float(loss))
    assert values[0] > 0 and values[-1] < values[0]


def test_stress_picks_the_attacks_that_apply():
    reg = default_registry()
    assert {"pdb_h_aware", "pdb_collision"} <= set(applicable_attacks(reg, "defense", "pdb"))
    assert "reference_contamination" not in applicable_attacks(reg, "defense", "pdb")  # it trusts no clean data
    assert "reference_contamination" in applicable_attacks(reg, "defense", "pdb.oracle_reserve")
    assert {"badclip_robust", "reference_contamination"} <= set(applicable_attacks(reg, "defense", "cleanclip"))
    assert {"decomp_evasion", "reference_contamination", "adaptive_patch"} <= set(
        applicable_attacks(reg, "defense", "decomp_rep"))
    assert {"detector_aware", "low_confidence", "adaptive_blend"} <= set(applicable_attacks(reg, "detector", "teco"))
    s = stress_suite(load_suite("quick"), reg, "defense", "pdb")
    plan = expand(s, reg)
    assert {a.name for a in plan.attacks} >= {"blended", "pdb_h_aware", "pdb_collision"}
    assert all(t.name == "pdb" for a in plan.attacks for t in a.targets)
    assert s.seeds == load_suite("quick").seeds and s.config_hash() == load_suite("quick").config_hash()
    with pytest.raises(BenchError, match="did you mean 'pdb'"):
        stress_suite(load_suite("quick"), reg, "defense", "pbd")


# --- the adaptive report, on fabricated stored results -----------------------------------------------------------

class _Board:
    """What the adaptive report reads: attack specs, pipelines, cell selection and stats."""

    def __init__(self, values: dict[tuple, list[float]]):
        reg = default_registry()
        s = suite([BADNET, "blended", {"name": "pdb_h_aware", "targets": ["pdb"]},
                   {"name": "pdb_collision", "targets": ["pdb"]}, {"name": "low_confidence", "targets": ["strip"]},
                   {"name": "adaptive_patch", "targets": ["strip"]}],
                  pipelines=[[], ["pdb"]], detectors=["strip"])
        self.plan = expand(s, reg)
        self.suite, self.focus = s, None
        self.attack_specs = {a.label: a for a in self.plan.attacks}
        self.pipelines = self.plan.pipelines
        self.values = values

    def select(self, **match):
        return [c for c in self.plan.cells if all(getattr(c, k) == v for k, v in match.items())]

    def stat(self, cells, metric):
        if not cells:
            return Stat(metric=metric, missing="not run")
        c = cells[0]
        values = self.values.get((c.attack, c.pipeline, c.detector, metric), [])
        return Stat(metric=metric, values=values, seeds=list(range(len(values))), keys=[c.key] * len(values))


def test_adaptive_report_verdicts():
    from bdbench_adaptive.report import adaptive_sections

    v = {("blended", ("pdb",), None, "asr"): [0.05, 0.07, 0.06], ("pdb_h_aware", ("pdb",), None, "asr"): [0.6, 0.7, 0.8],
         ("pdb_h_aware", (), None, "asr"): [0.95, 0.97, 0.96],
         ("none", ("pdb",), None, "cacc"): [0.7, 0.7, 0.7], ("pdb_collision", ("pdb",), None, "cacc"): [0.2, 0.25, 0.3],
         ("pdb_collision", (), None, "asr"): [0.5, 0.5, 0.5],
         ("blended", (), "strip", "auroc"): [0.9, 0.9, 0.92], ("low_confidence", (), "strip", "auroc"): [0.88, 0.9, 0.9],
         ("low_confidence", (), None, "asr"): [0.4, 0.5, 0.45],
         ("badnet", (), "strip", "auroc"): [0.55, 0.5, 0.52], ("adaptive_patch", (), "strip", "auroc"): [0.3, 0.3, 0.3],
         ("adaptive_patch", (), None, "asr"): [0.95, 0.95, 0.95]}
    (section,) = adaptive_sections(_Board(v))
    text = render_markdown(section)
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in text.splitlines() if line.startswith("| ")}
    assert "**breaks**: ASR +64.0 points" in rows[("pdb_h_aware", "pdb")]  # 70.0 - 6.0
    assert "70.0 ± 24.8" in rows[("pdb_h_aware", "pdb")]
    assert "**breaks** (availability): CACC −45.0 points" in rows[("pdb_collision", "pdb")]
    assert "holds (AUROC −1.3 points)" in rows[("low_confidence", "strip")]
    assert "adaptive attack weak: 45.0% ASR without a defense" in rows[("low_confidence", "strip")]
    assert "fails on the plain attack already" in rows[("adaptive_patch", "strip")]


def test_adaptive_patch_follows_the_reference_k_way_recipe(tiny_data, tiny_model):
    """Each poisoned / cover image carries exactly one patch, at that patch's training opacity, each set split
    evenly among the patches; the test trigger is the chosen patches, opaque; bad settings are refused."""
    from bdbench_adaptive.qi2023 import AdaptivePatch

    ctx = make_context(tiny_data, model=tiny_model)
    pairs = tiny_data.finetune
    attack = AdaptivePatch({"patch_size": 3, "poison_rate": 0.2, "cover_rate": 0.2})
    state = attack.prepare(ctx)
    state.update(ys=torch.tensor([0, 0, 8, 8]), xs=torch.tensor([0, 8, 0, 8]))  # apart, so each is checkable
    attack.load_state(state)
    opacities, s = attack.config.train_opacities, attack.config.patch_size
    ys, xs, patches = state["ys"].tolist(), state["xs"].tolist(), state["patches"]
    result = attack.poison(pairs, ctx)
    for rows in (result.poisoned, result.cover):
        counts = torch.zeros(len(opacities), dtype=torch.long)
        for i in rows.tolist():
            before, after = pairs.images[i], result.pairs.images[i]
            changed = [j for j, (y, x) in enumerate(zip(ys, xs))
                       if not torch.equal(after[:, y:y + s, x:x + s], before[:, y:y + s, x:x + s])]
            assert len(changed) == 1, (i, changed)
            j = changed[0]
            y, x = ys[j], xs[j]
            want = (1 - opacities[j]) * before[:, y:y + s, x:x + s] + opacities[j] * patches[j]
            assert torch.allclose(after[:, y:y + s, x:x + s], want, atol=1e-6)
            counts[j] += 1
        assert len(rows) >= len(opacities) and int(counts.max() - counts.min()) <= 1
    triggered = attack.apply_trigger(pairs.images[:4], ctx)
    for j in range(len(opacities)):
        region = triggered[:, :, ys[j]:ys[j] + s, xs[j]:xs[j] + s]
        if j in attack.config.test_patches:
            assert torch.equal(region, patches[j].expand(4, -1, -1, -1))
        else:
            assert torch.equal(region, pairs.images[:4, :, ys[j]:ys[j] + s, xs[j]:xs[j] + s])
    with pytest.raises(ValueError,
                       match=r"test_patches must be distinct indices of the 4 patches \(0..3\); got \[0, 4\]"):
        AdaptivePatch({"test_patches": [0, 4]})
    with pytest.raises(ValueError, match=r"train_opacities must lie in \(0, 1\]"):
        AdaptivePatch({"train_opacities": [0.5, 1.5]})
