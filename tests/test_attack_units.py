"""Attack unit tests (Zimmermann et al., "Increasing confidence in adversarial robustness evaluations",
NeurIPS 2022): each adaptive attack must break a deliberately weakened instance of its target.

A stress test that reports "the defense holds" is only evidence if the attack could have broken it. Each test
below weakens the target in the direction the attack exploits — so a correct attack breaks it — and asserts
the break with the adaptive report's own verdict rule (``bdbench_adaptive.report``: ASR up by
``BREAK_POINTS`` against the plain counterpart under the same target, CACC down by as much for the
availability attack, AUROC down by as much for detectors). A weak optimisation or a broken poisoning path
fails here instead of passing as "the defense holds".

Settings: the default suite's (generated world, tiny ViT, 10-epoch fine-tunes) at one seed, so each test
costs 1-3 fine-tunes (about 1 min each on a 2-core CPU) plus, once, the clean pretraining (about 4 min) and
the plain models, which are the default suite's. Marked ``slow``: ``make test-slow``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bdbench_adaptive.report import BREAK_POINTS
from bench_core.runner import Runner
from bench_core.suite import Suite, load_suite

pytestmark = pytest.mark.slow

SHARED = load_suite("default").model_dump(mode="json", include={"model", "data", "pretrain", "finetune",
                                                                   "evaluation", "resources"}, exclude_none=True)


@pytest.fixture(autouse=True)
def _unit_home(monkeypatch):
    """The user's home (``$BDBENCH_ATTACK_UNIT_HOME``, else ``~/.cache/bdbench``): the clean model and the plain
    attacks' no-defense models are the default and adaptive suites' seed-0 ones, computed once."""
    home = Path(os.environ.get("BDBENCH_ATTACK_UNIT_HOME", Path.home() / ".cache" / "bdbench"))
    monkeypatch.setenv("BDBENCH_HOME", str(home))


def run(name: str, attacks: list, pipelines: list = ([],), detectors: list = ()) -> dict:
    """Run the suite at seed 0; (attack label, pipeline labels or detector label) -> metrics."""
    suite = Suite.model_validate({**SHARED, "name": f"attack_unit_{name}", "attacks": attacks,
                                  "pipelines": list(pipelines), "detectors": list(detectors), "probes": [],
                                  "seeds": [0]})
    runner = Runner(suite, log=lambda msg: None)
    counts = runner.run()
    assert counts["failed"] == 0, counts
    records = runner.store.get_many(c.key for c in runner.plan.cells)
    return {(c.attack, c.detector or c.pipeline): records[c.key].metrics for c in runner.plan.cells}


def assert_breaks(what: str, plain: float, adaptive: float, rises: bool,
                  names: tuple[str, str] = ("plain", "adaptive")) -> None:
    """The adaptive report's rule: the adaptive attack moves the metric by BREAK_POINTS or more (up for ASR,
    down for CACC and AUROC). Prints the measured pair (``pytest -rP`` shows it)."""

    delta = 100 * ((adaptive - plain) if rises else (plain - adaptive))
    a, b = names
    print(f"{what}: {a} {100 * plain:.1f}%, {b} {100 * adaptive:.1f}% ({delta:+.1f} points toward a break)")
    assert delta >= BREAK_POINTS, f"{what}: {a} {plain:.3f}, {b} {adaptive:.3f}"


def test_pdb_h_aware_breaks_a_pdb_whose_trigger_it_can_guess():
    """Weakened PDB: Δ1 is a solid in-range 4 px corner square (inside the attack's guess distribution) and
    the defensive backdoor is trained lightly (5% reserve, no repeats)."""

    weak = {"name": "pdb", "label": "weak_pdb",
            "config": {"trigger_value": 1.0, "repeat": 1, "reserve_fraction": 0.05}}
    m = run("pdb_h_aware", ["blended", {"name": "pdb_h_aware", "config": {"poison_rate": 0.1},
                                        "targets": ["weak_pdb"]}], pipelines=[[weak]])
    plain, adaptive = m[("blended", ("weak_pdb",))]["asr"], m[("pdb_h_aware", ("weak_pdb",))]["asr"]
    assert_breaks("ASR under the weakened defense", plain, adaptive, rises=True)


def test_pdb_collision_breaks_the_clean_accuracy_of_a_pdb_it_can_imitate():
    """Weakened PDB: Δ1's value is 1.0, inside [0, 1], so the attacker's imitation (value 1.0, the published size
    and pattern) is exact; the reference's 2.0 is what keeps an image from carrying Δ1. The defensive backdoor
    keeps the reference reserve and repeats, so the defense still works without an attack: a lighter one (2%
    reserve, no repeats) measured 19.3% CACC with no attack, leaving an availability attack nothing to take."""

    weak = {"name": "pdb", "label": "weak_pdb", "config": {"trigger_value": 1.0}}
    m = run("pdb_collision", [{"name": "pdb_collision", "config": {"poison_rate": 0.1}, "targets": ["weak_pdb"]}],
            pipelines=[[weak]])
    clean, attacked = m[("none", ("weak_pdb",))]["cacc"], m[("pdb_collision", ("weak_pdb",))]["cacc"]
    assert_breaks("CACC under the weakened PDB", clean, attacked, rises=False)


def test_reference_contamination_evades_a_detector_that_trusts_a_heavily_contaminated_reference():
    """Weakened Decomp-Det: a third of its clean reference is triggered (the attacker's rate set high)."""

    m = run("reference_contamination", ["badnet", {"name": "reference_contamination",
                                                   "config": {"contamination_rate": 0.33}, "targets": ["decomp_det"]}],
            detectors=["decomp_det"])
    plain, adaptive = m[("badnet", "decomp_det")]["auroc"], m[("reference_contamination", "decomp_det")]["auroc"]
    assert_breaks("AUROC of the weakened detector", plain, adaptive, rises=False)


def test_adaptive_blend_evades_strip_on_few_blends():
    """Weakened STRIP: 4 blends at ratio 0.7 (the input dominates): a full blend trigger survives such blends
    and is caught; Adaptive-Blend's partial-trigger training makes its trigger fragile under blending."""

    weak = {"name": "strip", "label": "weak_strip", "config": {"n_blends": 4, "alpha": 0.7}}
    m = run("adaptive_blend", ["blended", {"name": "adaptive_blend", "targets": ["weak_strip"]}], detectors=[weak])
    plain, adaptive = m[("blended", "weak_strip")]["auroc"], m[("adaptive_blend", "weak_strip")]["auroc"]
    assert_breaks("AUROC of the weakened detector", plain, adaptive, rises=False)


def test_adaptive_patch_evades_decomp_det_at_a_strict_threshold():
    """Weakened Decomp-Det: epsilon at the 1% quantile (only heads far from every clean image count)."""

    weak = {"name": "decomp_det", "label": "weak_det", "config": {"epsilon_quantile": 0.01}}
    m = run("adaptive_patch", ["badnet", {"name": "adaptive_patch", "targets": ["weak_det"]}], detectors=[weak])
    plain, adaptive = m[("badnet", "weak_det")]["auroc"], m[("adaptive_patch", "weak_det")]["auroc"]
    assert_breaks("AUROC of the weakened detector", plain, adaptive, rises=False)


def test_detector_aware_evades_a_single_scale_scale_up():
    """Weakened SCALE-UP: one amplification factor (3), the transformation the attack's cover pairs use."""

    weak = {"name": "scale_up", "label": "weak_scale_up", "config": {"scales": [3.0]}}
    m = run("detector_aware", ["blended", {"name": "detector_aware", "config": {"cover_rate": 0.1},
                                           "targets": ["weak_scale_up"]}], detectors=[weak])
    plain, adaptive = m[("blended", "weak_scale_up")]["auroc"], m[("detector_aware", "weak_scale_up")]["auroc"]
    assert_breaks("AUROC of the weakened detector", plain, adaptive, rises=False)


def test_decomp_evasion_evades_decomp_det_at_a_strict_threshold():
    """Weakened Decomp-Det (1% quantile epsilon) against the strongest penalty of the sweep."""

    weak = {"name": "decomp_det", "label": "weak_det", "config": {"epsilon_quantile": 0.01}}
    m = run("decomp_evasion", ["badnet", {"name": "decomp_evasion", "config": {"penalty_weight": 10.0},
                                          "targets": ["weak_det"]}], detectors=[weak])
    plain, adaptive = m[("badnet", "weak_det")]["auroc"], m[("decomp_evasion", "weak_det")]["auroc"]
    assert_breaks("AUROC of the weakened detector", plain, adaptive, rises=False)


def test_badclip_robust_survives_a_cleanclip_that_removes_plain_badclip():
    """Target: CleanCLIP at 4x the suite's learning rate (10 epochs). The test needs a repair that removes the
    plain attack, or the adaptive one has nothing to break: in this world the reference CleanCLIP leaves plain
    BadCLIP intact (96.7% ASR on the board), and so did the weakened one first used here (3 epochs at a
    quarter of the rate: plain 98.3%, robust 97.8%). At 4x the rate plain BadCLIP falls from 98.4 to 66.6%
    (CACC 92.5 -> 85.2%). The robust variant runs this very repair, white-box, as its surrogate; it must keep
    10 points more ASR."""

    target = {"name": "cleanclip", "label": "cleanclip_4x_lr", "config": {"lr": 2e-3}}
    m = run("badclip_robust", ["badclip", {"name": "badclip_robust", "targets": ["cleanclip_4x_lr"]}],
            pipelines=[[], [target]])
    undefended, plain = m[("badclip", ())]["asr"], m[("badclip", ("cleanclip_4x_lr",))]["asr"]
    adaptive = m[("badclip_robust", ("cleanclip_4x_lr",))]["asr"]
    assert_breaks("plain BadCLIP's ASR lowered by the target (precondition)", undefended, plain, rises=False,
                  names=("no defense", "under the target"))
    assert_breaks("ASR under the target", plain, adaptive, rises=True)


def test_low_confidence_evades_strip_with_entropy_of_few_blends():
    """Weakened STRIP: 4 blends at ratio 0.7; a barely-winning target gives high-entropy blends like a clean
    image's."""

    weak = {"name": "strip", "label": "weak_strip", "config": {"n_blends": 4, "alpha": 0.7}}
    m = run("low_confidence", ["blended", {"name": "low_confidence", "targets": ["weak_strip"]}], detectors=[weak])
    plain, adaptive = m[("blended", "weak_strip")]["auroc"], m[("low_confidence", "weak_strip")]["auroc"]
    assert_breaks("AUROC of the weakened detector", plain, adaptive, rises=False)
