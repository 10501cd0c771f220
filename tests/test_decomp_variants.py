"""The paper's Decomp-Rep ablation rows (plugins/decomp ablations) and the epsilon_sweep, head_similarity and
head_transplant probes, on the untrained miniature CLIP (2 layers, 4 heads): what each edit changes and what
each probe returns. Numbers are meaningless on an untrained model; the contracts are what is checked."""

from __future__ import annotations

import pytest
import torch

from bench_core import ProbeData, ProbeResult, ZeroShotClassifier
from bench_core.decomposition import decompose
from bench_core.registry import default_registry
from bdbench_decomp.ablations import ABLATIONS, fixed_head_indices, lowest_k_mask
from bdbench_decomp.per_image import image_seeds
from bdbench_decomp.prototypes import default_late_layers, fit_prototypes

from conftest import make_context

N_IMAGES = 24


@pytest.fixture(scope="module")
def setup(tiny_model, tiny_data):
    images = tiny_data.evaluation.images[:N_IMAGES]
    clf = ZeroShotClassifier.build(tiny_model, tiny_data.classnames, tiny_data.templates)
    d = decompose(tiny_model, images)
    protos = fit_prototypes(tiny_model, tiny_data.reference, 0.5)  # a high quantile: many heads selected
    return images, clf, d, protos


def _defense(name: str, **config):
    return default_registry().create("defense", name, config)


def _triggered(images: torch.Tensor) -> torch.Tensor:
    out = images.clone()
    out[:, :, :4, :4] = 1.0
    return out


def _unchanged_except_last_heads(out, d):
    assert torch.equal(out.embed, d.embed) and torch.equal(out.mlps, d.mlps)
    assert torch.equal(out.heads[:, :-1], d.heads[:, :-1])


# --- Base-Decomp ------------------------------------------------------------------------------------------

def test_base_decomp_equals_no_defense(setup, tiny_data, tiny_model):
    images, clf, _, _ = setup
    ctx = make_context(tiny_data, model=tiny_model)
    wrapped = _defense("base_decomp").wrap(clf, ctx.restricted_to(frozenset()))
    torch.testing.assert_close(wrapped.logits(images), clf.logits(images), atol=1e-4, rtol=0)


# --- fixed heads ------------------------------------------------------------------------------------------

def test_fixed_head_indices_reproduce_the_paper_at_12_heads():
    assert fixed_head_indices("first", 12) == [0, 1, 2]  # paper [1, 2, 3]
    assert fixed_head_indices("middle", 12) == [6, 7, 8]  # paper [7, 8, 9]
    assert fixed_head_indices("last", 12) == [9, 10, 11]  # paper [10, 11, 12]
    assert fixed_head_indices("middle", 4) == [1, 2, 3] and fixed_head_indices("last", 2) == [0, 1]


@pytest.mark.parametrize("name,heads", [("decomp_rep.fixed_first3", [0, 1, 2]),
                                        ("decomp_rep.fixed_middle3", [1, 2, 3]),
                                        ("decomp_rep.fixed_last3", [1, 2, 3])])
def test_fixed_variants_change_exactly_their_heads(setup, tiny_context, name, heads):
    _, _, d, protos = setup
    out = _defense(name).edit(d, protos, tiny_context)
    _unchanged_except_last_heads(out, d)
    for h in range(d.n_heads):
        if h in heads:
            assert torch.equal(out.heads[:, -1, h], protos.mean.heads[0, -1, h].expand_as(out.heads[:, -1, h]))
        else:
            assert torch.equal(out.heads[:, -1, h], d.heads[:, -1, h])


def test_fixed_heads_config_override_and_range_check(setup, tiny_context):
    _, _, d, protos = setup
    out = _defense("decomp_rep.fixed_first3", heads=(3,)).edit(d, protos, tiny_context)
    assert torch.equal(out.heads[:, -1, :3], d.heads[:, -1, :3])
    with pytest.raises(ValueError, match="out of range"):
        _defense("decomp_rep.fixed_first3", heads=(7,)).edit(d, protos, tiny_context)


# --- all heads / all MLPs ---------------------------------------------------------------------------------

def test_no_heads_and_no_mlps_set_every_term_to_its_mean(setup, tiny_context):
    _, _, d, protos = setup
    out = _defense("decomp_rep.no_heads").edit(d, protos, tiny_context)
    assert torch.equal(out.heads, protos.mean.heads.expand_as(d.heads))
    assert torch.equal(out.mlps, d.mlps) and torch.equal(out.embed, d.embed)
    out = _defense("decomp_rep.no_mlps").edit(d, protos, tiny_context)
    assert torch.equal(out.mlps, protos.mean.mlps.expand_as(d.mlps))
    assert torch.equal(out.heads, d.heads)


# --- Decomp-Rep's selection with other values -------------------------------------------------------------

def test_abandon_zeroes_the_selected_terms(setup, tiny_context):
    _, _, d, protos = setup
    mask = protos.infected_heads(d)
    assert mask.any() and not mask.all()
    out = _defense("decomp_rep.abandon").edit(d, protos, tiny_context)
    last, before = out.heads[:, -1], d.heads[:, -1]
    assert torch.equal(last[mask], torch.zeros_like(last[mask]))
    assert torch.equal(last[~mask], before[~mask])
    late = default_late_layers(d.n_layers)
    assert torch.equal(out.mlps[:, late], torch.zeros_like(out.mlps[:, late]))
    early = [l for l in range(d.n_layers) if l not in late]
    assert torch.equal(out.mlps[:, early], d.mlps[:, early])
    heads_only = _defense("decomp_rep.abandon", repair="heads").edit(d, protos, tiny_context)
    assert torch.equal(heads_only.mlps, d.mlps)


def test_random_prototypes_are_deterministic_and_batch_independent(setup, tiny_data, tiny_model):
    images, clf, d, protos = setup
    ctx0 = make_context(tiny_data, seed=0, model=tiny_model)
    edit = _defense("decomp_rep.random_prototypes").edit
    a, b = edit(d, protos, ctx0), edit(d, protos, ctx0)
    assert torch.equal(a.heads, b.heads) and torch.equal(a.mlps, b.mlps)
    mask = protos.infected_heads(d)
    assert not torch.allclose(a.heads[:, -1][mask], d.heads[:, -1][mask])
    c = edit(d, protos, make_context(tiny_data, seed=1, model=tiny_model))
    assert not torch.equal(a.heads, c.heads)
    # inside the wrapped classifier the draws are keyed by image content: same logits in any batch
    defense = _defense("decomp_rep.random_prototypes", epsilon_quantile=0.5)
    wrapped = defense.wrap(clf, ctx0)
    full = wrapped.logits(images)
    torch.testing.assert_close(wrapped.logits(images[5:9]), full[5:9])
    torch.testing.assert_close(defense.wrap(clf, ctx0).logits(images), full)


def test_random_heads_matches_decomp_rep_count_and_is_deterministic(setup, tiny_data, tiny_model, tiny_context):
    images, clf, d, protos = setup
    defense = _defense("decomp_rep.random_heads")
    out = defense.edit(d, protos, tiny_context)
    _unchanged_except_last_heads(out, d)
    changed = (out.heads[:, -1] != d.heads[:, -1]).any(dim=-1)
    assert torch.equal(changed.sum(1), protos.infected_heads(d).sum(1))
    assert torch.equal(defense.edit(d, protos, tiny_context).heads, out.heads)
    fixed = _defense("decomp_rep.random_heads", n_heads=2).edit(d, protos, tiny_context)
    assert ((fixed.heads[:, -1] != d.heads[:, -1]).any(dim=-1).sum(1) == 2).all()
    wrapped = _defense("decomp_rep.random_heads", n_heads="reference").wrap(clf, tiny_context)
    torch.testing.assert_close(wrapped.logits(images[:4]), wrapped.logits(images)[:4])


def test_decomp_reverse_repairs_the_highest_similarity_heads(setup, tiny_context):
    _, _, d, protos = setup
    out = _defense("decomp_reverse").edit(d, protos, tiny_context)
    _unchanged_except_last_heads(out, d)
    sim, k = protos.head_similarity(d), protos.infected_heads(d).sum(1)
    replaced = (out.heads[:, -1] != d.heads[:, -1]).any(dim=-1)
    assert torch.equal(replaced.sum(1), k)
    for i in range(len(sim)):
        top = set(sim[i].argsort(descending=True)[:int(k[i])].tolist())
        assert set(replaced[i].nonzero().flatten().tolist()) == top
    assert torch.equal(lowest_k_mask(torch.tensor([[0.3, 0.1, 0.2]]), torch.tensor([2])),
                       torch.tensor([[False, True, True]]))


def test_image_seeds_are_per_image_and_batch_independent():
    x = torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(0))  # > 4096 values: fingerprinted
    seeds = image_seeds(x, 7)
    assert len(set(seeds)) == 6 and image_seeds(x[2:4], 7) == seeds[2:4] and image_seeds(x, 8) != seeds


@pytest.mark.parametrize("name", [cls.name for cls in ABLATIONS])
def test_every_variant_wraps_to_finite_logits(setup, tiny_data, tiny_model, name):
    images, clf, _, _ = setup
    cls = default_registry().defenses.get(name)
    assert cls.version == "0.1.0" and cls.summary and cls.stage == "inference"
    ctx = make_context(tiny_data, model=tiny_model).restricted_to(cls.threat_model.reads)
    logits = cls().wrap(clf, ctx).logits(images)
    assert logits.shape == (len(images), len(tiny_data.classnames)) and torch.isfinite(logits).all()


# --- probes -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probe_data(tiny_data):
    ev = tiny_data.evaluation
    nontarget = (ev.labels != 0).nonzero().flatten()[:16]
    return ProbeData(ev.images[:20], ev.labels[:20], _triggered(ev.images[nontarget]), ev.labels[nontarget], 0)


def _run_probe(name, setup, probe_data, tiny_context, **config) -> ProbeResult:
    probe = default_registry().create("probe", name, config)
    return probe.run(setup[1], probe_data, tiny_context.restricted_to(probe.threat_model.reads))


def test_epsilon_sweep_shapes(setup, probe_data, tiny_context):
    qs = (0.3, 0.05, 0.5)
    result = _run_probe("epsilon_sweep", setup, probe_data, tiny_context, quantiles=qs)
    rows = result.tables["epsilon_sweep"]
    assert [r["epsilon_quantile"] for r in rows] == sorted(qs)
    assert set(rows[0]) == {"epsilon_quantile", "heads_per_clean_image", "heads_per_triggered_image",
                            "cacc_heads", "asr_heads", "cacc_heads_mlps", "asr_heads_mlps"}
    counts = [r["heads_per_triggered_image"] for r in rows]
    assert counts == sorted(counts)  # a larger epsilon selects at least as many heads
    fig = result.figures["epsilon_sweep"]
    assert fig["type"] == "line" and {"title", "xlabel", "ylabel", "x", "series"} <= set(fig)
    assert fig["x"] == sorted(qs) and all(len(v) == len(qs) for v in fig["series"].values())
    assert {"cacc_none", "asr_none", "asr_heads_min", "cacc_heads_mlps_at_min"} <= set(result.summary)
    plain = setup[1].logits(probe_data.clean_images).argmax(1)
    assert result.summary["cacc_none"] == pytest.approx(float((plain == probe_data.clean_labels).float().mean()))
    with pytest.raises(Exception):
        default_registry().create("probe", "epsilon_sweep", {"quantiles": (1.5,)})


def test_head_similarity_shapes(setup, probe_data, tiny_context):
    result = _run_probe("head_similarity", setup, probe_data, tiny_context, max_points=5)
    rows = result.tables["head_similarity"]
    n_heads = setup[2].n_heads
    assert [r["head"] for r in rows] == list(range(n_heads))
    for r in rows:
        assert 0 <= r["ks"] <= 1 and r["mmd"] > -1e-9
        assert r["clean_q10"] <= r["clean_q50"] <= r["clean_q90"]
    fig = result.figures["head_similarity"]
    assert fig["type"] == "density" and {"title", "xlabel", "series"} <= set(fig)
    assert set(fig["series"]) == {f"{s} h{h}" for s in ("clean", "triggered") for h in range(n_heads)}
    assert all(len(v) == 5 and all(-1.0001 <= x <= 1.0001 for x in v) for v in fig["series"].values())
    assert {"ks_mean", "ks_max", "mmd_max", "head_ks_max"} <= set(result.summary)


def test_head_transplant_shapes(setup, probe_data, tiny_context):
    result = _run_probe("head_transplant", setup, probe_data, tiny_context, epsilon_quantile=0.5)
    rows = {r["transplant"]: r for r in result.tables["head_transplant"]}
    assert set(rows) == {"none", "selected", "all_last_layer"}
    assert rows["none"]["heads_per_image"] == 0 and rows["all_last_layer"]["heads_per_image"] == setup[2].n_heads
    plain = setup[1].logits(probe_data.clean_images).argmax(1)
    assert rows["none"]["cacc"] == pytest.approx(float((plain == probe_data.clean_labels).float().mean()))
