"""The layer_ablation and layer_mmd probes (paper Fig. 2, Fig. 8) and the Finding 2 criterion of the leaderboard,
on the untrained miniature CLIP (2 layers, 4 heads) and on fabricated summaries whose answer is known."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bench_core import ProbeData, ZeroShotClassifier
from bench_core.decomposition import decompose_batched, mean_component_outputs
from bench_core.leaderboard import Board, _merge_table_over_seeds
from bench_core.report import render_markdown
from bdbench_decomp.findings import finding2_check, finding2_section
from bench_core.registry import default_registry
from bdbench_decomp.analysis import cacc_asr
from bdbench_decomp.layer_ablation import ablate_layers, ablated_layers

from conftest import make_context


def _triggered(images: torch.Tensor) -> torch.Tensor:
    out = images.clone()
    out[:, :, :8, :8] = 1.0
    return out


@pytest.fixture(scope="module")
def probe_data(tiny_data):
    ev = tiny_data.evaluation
    nontarget = (ev.labels != 0).nonzero().flatten()[:20]
    return ProbeData(ev.images[:24], ev.labels[:24], _triggered(ev.images[nontarget]), ev.labels[nontarget], 0)


@torch.no_grad()
def _classifier(model, tiny_data) -> ZeroShotClassifier:
    """A classifier whose predictions react to ablations. The untrained model's zero-shot head predicts one class
    for every image; here class k's weight is held-out image k's embedding minus the mean embedding, made
    orthogonal to the mean direction (which dominates every untrained embedding)."""
    e = F.normalize(model.encode_image(tiny_data.heldout.images), dim=-1)
    mu = F.normalize(e.mean(0), dim=0)
    w = e[:len(tiny_data.classnames)] - e.mean(0)
    return ZeroShotClassifier(model, F.normalize(w - (w @ mu)[:, None] * mu, dim=-1))


def _run(name, clf, data, tiny_data, seed=0, **config):
    probe = default_registry().create("probe", name, config)
    ctx = make_context(tiny_data, seed=seed).restricted_to(probe.threat_model.reads)
    return probe.run(clf, data, ctx)


def _rows(result) -> dict[tuple, dict]:
    return {(r["effect"], r["ablated"], r["mode"], r["layer"]): r for r in result.tables["layer_ablation"]}


# --- layer_ablation ---------------------------------------------------------------------------------------

def test_ablated_layers_per_mode():
    assert ablated_layers("forward", 2, 6) == (0, 1, 2)
    assert ablated_layers("backward", 2, 6) == (2, 3, 4, 5)
    assert ablated_layers("separate", 2, 6) == (2,)
    assert ablated_layers("forward", 5, 6) == ablated_layers("backward", 0, 6) == tuple(range(6))
    with pytest.raises(ValueError):
        ablated_layers("sideways", 0, 6)
    with pytest.raises(ValueError):
        ablated_layers("forward", 6, 6)


def test_ablate_layers_replaces_exactly_the_given_layers(tiny_model, tiny_data):
    d = decompose_batched(tiny_model, tiny_data.evaluation.images[:6])
    mean = decompose_batched(tiny_model, tiny_data.reference).mean()
    out = ablate_layers(d, mean, "attn", (1,))
    assert torch.equal(out.heads[:, 1], mean.heads[:, 1].expand_as(out.heads[:, 1]))
    assert torch.equal(out.heads[:, 0], d.heads[:, 0]) and torch.equal(out.mlps, d.mlps)
    out = ablate_layers(d, mean, "mlp", (0,))
    assert torch.equal(out.mlps[:, 0], mean.mlps[:, 0].expand_as(out.mlps[:, 0]))
    assert torch.equal(out.mlps[:, 1], d.mlps[:, 1]) and torch.equal(out.heads, d.heads)


def test_all_layers_direct_equals_mean_ablation(tiny_model, tiny_data, probe_data):
    clf = _classifier(tiny_model, tiny_data)
    result = _run("layer_ablation", clf, probe_data, tiny_data, effects=["direct"])
    reference = _run("mean_ablation", clf, probe_data, tiny_data).summary
    n = tiny_model.visual.transformer.layers
    s = result.summary
    assert s["asr_none"] == reference["asr_none"] and s["cacc_none"] == reference["cacc_none"]
    for key in ("heads", "mlps"):
        for mode, layer in (("forward", n - 1), ("backward", 0)):
            assert s[f"asr_direct_{key}_{mode}_l{layer}"] == reference[f"asr_{key}"]
            assert s[f"cacc_direct_{key}_{mode}_l{layer}"] == reference[f"cacc_{key}"]
    assert not any(k.startswith(("asr_total", "cacc_total")) for k in s)
    # the classifier reacts: some ablation moves the ASR (else the equalities above prove nothing)
    assert any(s[k] != s["asr_none"] for k in s if k.startswith("asr_direct"))


def test_table_figures_and_summary_are_consistent(tiny_model, tiny_data, probe_data):
    clf = _classifier(tiny_model, tiny_data)
    result = _run("layer_ablation", clf, probe_data, tiny_data, batch_size=7)
    n = tiny_model.visual.transformer.layers
    rows = result.tables["layer_ablation"]
    assert len(rows) == 2 * 2 * 3 * n
    assert set(rows[0]) == {"effect", "ablated", "mode", "layer", "cacc", "asr"}
    assert all(0 <= r["cacc"] <= 1 and 0 <= r["asr"] <= 1 for r in rows)
    assert set(result.figures) == {f"{e}_{k}" for e in ("direct", "total") for k in ("heads", "mlps")}
    fig = result.figures["total_mlps"]
    assert fig["type"] == "line" and fig["x"] == list(range(n))
    assert {f"ASR {m}" for m in ("forward", "backward", "separate")} <= set(fig["series"])
    assert fig["series"]["ASR backward"] == [r["asr"] for r in rows if r["effect"] == "total"
                                             and r["ablated"] == "MLPs" and r["mode"] == "backward"]
    assert fig["series"]["ASR baseline"] == [result.summary["asr_none"]] * n
    by_key = _rows(result)
    for (effect, label, mode, layer), r in by_key.items():
        key = {"AHs": "heads", "MLPs": "mlps"}[label]
        assert result.summary[f"asr_{effect}_{key}_{mode}_l{layer}"] == r["asr"]
    # the wiring: a total-effect row equals the decomposition with those overrides, computed by hand
    outputs = mean_component_outputs(tiny_model, tiny_data.reference)
    overrides = {("attn", 0): outputs[("attn", 0)]}
    expected = cacc_asr(clf, decompose_batched(tiny_model, probe_data.clean_images, overrides=overrides),
                        decompose_batched(tiny_model, probe_data.triggered_images, overrides=overrides),
                        probe_data.clean_labels, probe_data.triggered_labels, 0)
    row = by_key[("total", "AHs", "separate", 0)]
    assert (row["cacc"], row["asr"]) == pytest.approx(expected)


def test_zeroed_layer_ablation_changes_nothing_in_either_effect(tiny_model, tiny_data, probe_data):
    """A component whose output is always zero has a zero mean: ablating it alone, directly or in total,
    must give the unablated numbers; and total and direct agree for it."""
    model = copy.deepcopy(tiny_model)
    block = model.visual.transformer.resblocks[0]
    for p in (block.mlp.c_proj.weight, block.mlp.c_proj.bias, block.attn.out_proj.weight, block.attn.out_proj.bias):
        p.data.zero_()
    clf = _classifier(model, tiny_data)
    result = _run("layer_ablation", clf, probe_data, tiny_data)
    s = result.summary
    for effect in ("direct", "total"):
        for key in ("heads", "mlps"):
            assert s[f"asr_{effect}_{key}_separate_l0"] == s["asr_none"]
            assert s[f"cacc_{effect}_{key}_separate_l0"] == s["cacc_none"]
    assert any(s[f"asr_{e}_heads_separate_l1"] != s["asr_none"] for e in ("direct", "total"))  # layer 1 is intact
    # and at the level of the decomposition, where the untrained model's predictions cannot hide a difference
    outputs = mean_component_outputs(model, tiny_data.reference)
    assert torch.equal(outputs[("mlp", 0)], torch.zeros_like(outputs[("mlp", 0)]))
    images = probe_data.triggered_images
    plain = decompose_batched(model, images)
    total = decompose_batched(model, images, overrides={("mlp", 0): outputs[("mlp", 0)]})
    torch.testing.assert_close(total.total(), plain.total(), atol=1e-5, rtol=0)
    # the same override on the intact model does change later layers (the test can fail)
    intact = mean_component_outputs(tiny_model, tiny_data.reference)
    changed = decompose_batched(tiny_model, images, overrides={("mlp", 0): intact[("mlp", 0)]})
    assert not torch.allclose(changed.heads[:, 1], decompose_batched(tiny_model, images).heads[:, 1], atol=1e-4)


def test_layer_ablation_config_is_validated():
    with pytest.raises(Exception):
        default_registry().create("probe", "layer_ablation", {"effects": ["indirect"]})
    with pytest.raises(Exception):
        default_registry().create("probe", "layer_ablation", {"layers": 3})


# --- layer_mmd --------------------------------------------------------------------------------------------

def test_layer_mmd_zero_for_identical_and_positive_for_triggered(tiny_model, tiny_data, probe_data):
    clf = _classifier(tiny_model, tiny_data)
    n = tiny_model.visual.transformer.layers
    same = ProbeData(probe_data.clean_images, probe_data.clean_labels, probe_data.clean_images,
                     probe_data.clean_labels, 0)
    result = _run("layer_mmd", clf, same, tiny_data)  # samples >= N: both sides are the same multiset
    assert [r["layer"] for r in result.tables["layer_mmd"]] == list(range(n))
    assert all(abs(r["mmd_attn"]) < 1e-9 and abs(r["mmd_mlp"]) < 1e-9 for r in result.tables["layer_mmd"])
    stamped = ProbeData(probe_data.clean_images, probe_data.clean_labels, _triggered(probe_data.clean_images),
                        probe_data.clean_labels, 0)
    result = _run("layer_mmd", clf, stamped, tiny_data)
    rows = result.tables["layer_mmd"]
    assert all(r["mmd_attn"] > 1e-3 and r["mmd_mlp"] > 1e-3 for r in rows)
    s = result.summary
    assert s["mmd_attn_l0"] == rows[0]["mmd_attn"] and s["mmd_mlp_l1"] == rows[1]["mmd_mlp"]
    assert s["layer_mmd_attn_max"] == max(range(n), key=lambda l: rows[l]["mmd_attn"])
    fig = result.figures["layer_mmd"]
    assert fig["type"] == "line" and fig["x"] == list(range(n)) and set(fig["series"]) == {"AHs", "MLPs"}


def test_layer_mmd_subsample_is_seeded(tiny_model, tiny_data, probe_data):
    clf = _classifier(tiny_model, tiny_data)
    a = _run("layer_mmd", clf, probe_data, tiny_data, seed=0, samples=6).summary
    b = _run("layer_mmd", clf, probe_data, tiny_data, seed=0, samples=6).summary
    c = _run("layer_mmd", clf, probe_data, tiny_data, seed=1, samples=6).summary
    assert a == b and a != c


# --- Finding 2 --------------------------------------------------------------------------------------------

def _summary(n: int, asr0: float, heads_sep: dict[int, float], heads_back: dict[int, float],
             mlps_sep: dict[int, float], mlps_back: dict[int, float], effect: str = "direct") -> dict[str, float]:
    """A layer_ablation summary: unlisted layers keep the unablated ASR."""
    s = {"asr_none": asr0, "cacc_none": 0.7}
    for key, mode, given in (("heads", "separate", heads_sep), ("heads", "backward", heads_back),
                             ("mlps", "separate", mlps_sep), ("mlps", "backward", mlps_back)):
        for layer in range(n):
            s[f"asr_{effect}_{key}_{mode}_l{layer}"] = given.get(layer, asr0)
    return s


LAST_HEADS = dict(heads_sep={5: 0.1}, heads_back={l: 0.1 for l in range(6)}, mlps_sep={},
                  mlps_back={l: 0.2 for l in range(4)})
"""The paper's picture on a 6-layer model: the last layer's heads carry it, MLPs 3..5 together do."""


def test_finding2_holds_when_only_last_layer_heads_matter():
    check = finding2_check(_summary(6, 0.9, **LAST_HEADS), "local")
    assert check.verdict == "holds" and check.heads_in_last_layer and check.n_layers == 6
    assert check.last_heads == 0.1 and check.heads_tail == 5 and check.mlps_tail == 3


def test_finding2_mlps_spread_over_late_layers():
    check = finding2_check(_summary(6, 0.9, **LAST_HEADS), "global")
    assert check.verdict == "holds" and check.mlps_spread_late and "3..5" in check.reason
    single = finding2_check(_summary(6, 0.9, **{**LAST_HEADS, "mlps_sep": {4: 0.3}}), "global")
    assert single.verdict == "does not hold" and "layer 4's MLP alone" in single.reason
    early = finding2_check(_summary(6, 0.9, **{**LAST_HEADS, "mlps_back": {0: 0.1, 1: 0.2}}), "global")
    assert early.verdict == "does not hold" and early.mlps_tail == 1
    never = finding2_check(_summary(6, 0.9, **{**LAST_HEADS, "mlps_back": {}}), "global")
    assert never.verdict == "does not hold" and never.mlps_tail is None


def test_finding2_does_not_hold_when_earlier_heads_matter_or_last_do_not():
    earlier = finding2_check(_summary(6, 0.9, **{**LAST_HEADS, "heads_sep": {2: 0.2, 5: 0.1}}), "local")
    assert earlier.verdict == "does not hold" and "layer 2" in earlier.reason
    weak = finding2_check(_summary(6, 0.9, **{**LAST_HEADS, "heads_sep": {5: 0.6}}), "local")
    assert weak.verdict == "does not hold" and not weak.heads_in_last_layer
    assert finding2_check(_summary(6, 0.05, **LAST_HEADS), "local").verdict == "n/a"
    with pytest.raises(ValueError):
        finding2_check({"asr_none": 0.9}, "local")


class _FakeBoard:
    """What finding2_section reads from a Board: the suite's probes and attacks, and records per attack."""

    def __init__(self, metrics: dict[str, list[dict[str, float]]], localities: dict[str, str], probes):
        self.attack_specs = {a: SimpleNamespace(locality=loc) for a, loc in localities.items()}
        self.probes = probes
        self.metrics = metrics

    def select(self, **match):
        assert match["probe"] == "layer_ablation" and match["pipeline"] == ()
        return [match["attack"]]

    def ok(self, cells):
        return [SimpleNamespace(metrics=m) for c in cells for m in self.metrics.get(c, [])]

    mean_probe_summary = Board.mean_probe_summary  # the real averaging over seeds, on the fabricated records
    runs_probe = Board.runs_probe


def test_finding2_section_on_fabricated_results():
    probe = SimpleNamespace(name="layer_ablation")
    direct = _summary(6, 0.9, **LAST_HEADS)
    total = _summary(6, 0.9, heads_sep={}, heads_back={}, mlps_sep={}, mlps_back={}, effect="total")
    seeds = [{**direct, **total}, {**direct, **total, "asr_direct_heads_separate_l5": 0.3}]  # mean 0.2
    board = _FakeBoard({"badnet": seeds, "blended": [{**direct, "asr_direct_mlps_separate_l5": 0.1}]},
                       {"badnet": "local", "blended": "global", "issba": "global"}, [(probe, ())])
    text = "".join(render_markdown(sec) for sec in finding2_section(board))
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.split("|")[1:-1]]
                                          for line in text.splitlines() if line.startswith("| "))}
    assert "Finding 2" in text and "issba" not in rows
    badnet, blended = rows["badnet"], rows["blended"]
    assert badnet[:5] == ["badnet", "local", "90.0", "20.0 / 90.0", "5 / —"]  # seed mean; direct / total
    assert badnet[-2] == "holds"
    assert blended[3] == "10.0" and blended[-2] == "does not hold" and "layer 5's MLP alone" in blended[-1]
    assert finding2_section(_FakeBoard({}, {}, [(probe, ("pdb",))])) == []


def test_probe_tables_keep_index_columns():
    text = _merge_table_over_seeds([[{"layer": 2, "asr": 0.5}], [{"layer": 2, "asr": 0.7}]])
    assert "| 2 " in text and "2.000" not in text and "60.0 ±" in text


def test_attack_targets_state_shortfalls():
    from bench_core.leaderboard import attack_targets

    records = {"none": {"cacc": 0.93}, "strong": {"asr": 0.95, "cacc": 0.92}, "weak": {"asr": 0.70, "cacc": 0.85}}

    class FakeBoard:
        attack_specs = {"strong": None, "weak": None}
        mean_eval_metric = Board.mean_eval_metric  # the real averaging, on the fabricated records

        def select(self, **match):
            return [match["attack"]]

        def ok(self, cells):
            return [SimpleNamespace(metrics=records[c]) for c in cells]

    from bench_core.report import markdown_table

    text = markdown_table(attack_targets(FakeBoard()))
    assert "| strong   | 95.0" in text and "meets" in text
    assert "short: ASR below 90%; CACC 8.0 points below clean" in text
