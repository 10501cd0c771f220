"""The text-side probes of plugins/decomp: TEXTSPAN (its greedy algorithm on synthetic data with known answers,
the world's text pool, the probe on the miniature CLIP) and prompt_sensitivity (template sets rebuilt on the
pipeline's image side; Decomp-Det, which never reads the text head, gives the same AUROC for every set)."""

from __future__ import annotations

import re

import pytest
import torch
from bench_core.errors import BenchError

from bench_core import ProbeData, ZeroShotClassifier
from bench_core.data import world
from bench_core.metrics import accuracy
from bench_core.registry import default_registry
from bench_core.zeroshot import batched_logits
from bdbench_decomp.prompt_sensitivity import DEFAULT_PARAPHRASES, PromptSensitivity
from bdbench_decomp.text_pool import GENERIC_DESCRIPTIONS, text_pool, world_phrases
from bdbench_decomp.textspan import TextSpan, text_span

TARGET = 0


def _probe(name: str, **config):
    return default_registry().create("probe", name, config)


# --- the TEXTSPAN algorithm -------------------------------------------------------------------------------

def _synthetic(n=400, d=16, m=12, seed=0):
    """Contributions spanned by texts 0, 3, 7 with standard deviations 4, 2, 1 (plus a constant offset)."""
    g = torch.Generator().manual_seed(seed)
    texts = torch.nn.functional.normalize(torch.randn(m, d, generator=g, dtype=torch.float64), dim=-1)
    coef = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)
    c = coef @ texts[[0, 3, 7]] + 5.0 * torch.randn(1, d, generator=g, dtype=torch.float64)
    return c, texts


@pytest.mark.parametrize("centre_texts", [True, False])
def test_text_span_recovers_the_generating_texts_in_order(centre_texts):
    c, texts = _synthetic()
    pool = torch.cat([texts, -texts])  # a mean-zero pool: centring it changes nothing
    span = text_span(c, pool, k=4, centre_texts=centre_texts)
    assert span.indices[:3] == [0, 3, 7]
    assert span.explained[0] > span.explained[1] > span.explained[2] > 0.02
    assert sum(span.explained[:3]) == pytest.approx(1.0, abs=1e-9)  # C lies in the span of the three texts
    assert span.explained[3] == pytest.approx(0.0, abs=1e-9)


def test_text_span_removes_picked_directions():
    g = torch.Generator().manual_seed(1)
    c, texts = torch.randn(200, 16, generator=g), torch.randn(30, 16, generator=g)
    span = text_span(c, texts, k=6)
    gram = span.directions @ span.directions.T
    torch.testing.assert_close(gram, torch.eye(6, dtype=gram.dtype), atol=1e-10, rtol=0)
    assert len(set(span.indices)) == 6 and all(v >= 0 for v in span.explained) and sum(span.explained) <= 1 + 1e-12
    # explained fractions are exactly the variance of C captured by the picked directions' span
    centred = c.double() - c.double().mean(0)
    captured = (centred @ span.directions.T).pow(2).sum() / centred.pow(2).sum()
    assert sum(span.explained) == pytest.approx(float(captured), abs=1e-10)


def test_text_span_rank_restricts_texts_to_the_principal_subspace():
    c, texts = _synthetic()
    span = text_span(c, texts, k=2, rank=2)  # the top-2 principal directions of C come from texts 0 and 3
    assert span.indices == [0, 3]
    basis = torch.linalg.svd(c - c.mean(0), full_matrices=False).Vh[:2]
    torch.testing.assert_close(span.directions @ basis.T @ basis, span.directions, atol=1e-10, rtol=0)


def test_text_span_rejects_k_beyond_the_pool():
    c, texts = _synthetic()
    with pytest.raises(ValueError, match="pool of 12"):
        text_span(c, texts, k=13)


# --- the text pool ----------------------------------------------------------------------------------------

def _named(pool, word: str) -> bool:
    return any(re.search(rf"\b{re.escape(word)}\b", t) for t in pool)


def test_world_pool_covers_the_world_vocabulary():
    pool = text_pool(world.CLASSES)
    vocabulary = [*world.CLASSES, *world.COLORS, *world.LOCATIONS, *world.SIZES, *world.TEXTURES]
    assert [w for w in vocabulary if not _named(pool, w)] == []
    assert set(GENERIC_DESCRIPTIONS) <= set(pool) and len(set(pool)) == len(pool)


def test_other_classnames_get_class_phrases_without_the_world_vocabulary():
    pool = text_pool(("cat", "dog"))
    assert {"a cat", "a photo of a dog"} <= set(pool)
    assert not set(world_phrases()) & set(pool) and not _named(pool, "striped")
    assert set(GENERIC_DESCRIPTIONS) <= set(pool)


# --- the textspan probe -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(tiny_model, tiny_data):
    return ZeroShotClassifier.build(tiny_model, tiny_data.classnames, tiny_data.templates)


@pytest.fixture(scope="module")
def probe_data(tiny_data):
    ev = tiny_data.evaluation
    nontarget = (ev.labels != TARGET).nonzero().flatten()[:20]
    triggered = ev.images[nontarget].clone()
    triggered[:, :, :4, :4] = 1.0
    return ProbeData(ev.images[:24], ev.labels[:24], triggered, ev.labels[nontarget], TARGET)


def test_textspan_probe_tables(classifier, probe_data, tiny_context):
    result = _probe("textspan", k=3).run(classifier, probe_data, tiny_context.restricted_to(frozenset()))
    components = [f"L1.h{h}" for h in range(4)] + ["L0.mlp", "L1.mlp"]  # late_mlps=3 clamps to the 2 layers
    rows = result.tables["textspan"]
    assert len(rows) == len(components) * 2 * 3
    assert [r["component"] for r in rows[::6]] == components
    pool = set(text_pool(world.CLASSES))
    assert all(r["text"] in pool and 0 <= r["variance_fraction"] <= 1 for r in rows)
    per = result.tables["textspan_components"]
    assert [r["component"] for r in per] == components
    for r in per:
        assert 0 <= r["clean_variance_fraction"] <= 1 + 1e-9 and r["overlap"] in (0, 1 / 3, 2 / 3, 1)
    fig = result.figures["textspan"]
    assert fig["type"] == "bar" and fig["x"] == components and set(fig["series"]) == {"clean", "triggered"}
    assert result.summary["n_components"] == 6 and result.summary["pool_size"] == len(pool)


def test_textspan_with_the_whole_pool_picked_agrees_and_names_the_target(classifier, probe_data, tiny_context):
    texts = ("a circle", "a square", "random noise", "a red thing")  # target 0 is "circle"
    # uncentred: 4 centred texts would span only 3 directions
    result = _probe("textspan", k=4, texts=texts, centre_texts=False).run(classifier, probe_data, tiny_context)
    s = result.summary
    assert s["components_naming_target_clean"] == s["components_naming_target_triggered"] == s["n_components"]
    assert s["overlap_mean"] == pytest.approx(1.0) and s["text_similarity_mean"] == pytest.approx(1.0)
    assert {r["text"] for r in result.tables["textspan"]} == set(texts)


def test_textspan_honours_the_input_transform(classifier, probe_data, tiny_context):
    constant = classifier.replace(input_transform=lambda x: torch.zeros_like(x))  # every image the same
    result = _probe("textspan", k=2).run(constant, probe_data, tiny_context)
    assert all(r["variance_fraction"] == 0 for r in result.tables["textspan"])
    plain = _probe("textspan", k=2).run(classifier, probe_data, tiny_context)
    assert any(r["variance_fraction"] > 0 for r in plain.tables["textspan"])


def test_textspan_config_errors_name_the_value():
    with pytest.raises(BenchError, match="texts is empty"):
        _probe("textspan", texts=[])
    with pytest.raises(BenchError, match="2 distinct entries; k=5 needs at least 6"):
        _probe("textspan", texts=["a circle", "a square"])
    with pytest.raises(BenchError, match="k=2 needs at least 3"):
        _probe("textspan", k=2, texts=["a circle", "a square"])
    assert _probe("textspan", k=2, texts=["a circle", "a square"], centre_texts=False).config.k == 2
    with pytest.raises(BenchError, match=r"blank entries at positions \[1\]"):
        _probe("textspan", k=1, texts=["a circle", "  "])


# --- prompt_sensitivity -----------------------------------------------------------------------------------

def _cacc(clf, data: ProbeData) -> float:
    return accuracy(batched_logits(clf, data.clean_images).argmax(1), data.clean_labels)


def test_prompt_sensitivity_rows_and_known_answers(classifier, probe_data, tiny_context):
    probe = _probe("prompt_sensitivity")
    result = probe.run(classifier, probe_data, tiny_context.restricted_to(probe.threat_model.reads))
    rows = {r["template_set"]: r for r in result.tables["prompt_sensitivity"]}
    assert list(rows) == ["single", "ensemble", "paraphrased"]
    n_templates = len(tiny_context.templates)
    assert [rows[s]["n_templates"] for s in rows] == [1, n_templates, n_templates]
    assert rows["paraphrased"]["n_paraphrased"] == len(world.CLASSES) == result.summary["n_paraphrased"]
    assert rows["ensemble"]["cacc"] == pytest.approx(_cacc(classifier, probe_data))
    aurocs = {r["decomp_det_auroc"] for r in rows.values()}
    assert len(aurocs) == 1 and 0 <= aurocs.pop() <= 1  # Decomp-Det never reads the text head
    assert len({r["decomp_det_tpr_at_5fpr"] for r in rows.values()}) == 1
    for s in rows:
        assert result.summary[f"cacc_{s}"] == rows[s]["cacc"] and f"auroc_{s}" in result.summary
    fig = result.figures["prompt_sensitivity"]
    assert fig["type"] == "bar" and fig["x"] == list(rows) and set(fig["series"]) == {"CACC", "ASR"}


def test_prompt_sensitivity_keeps_the_pipeline_image_side(classifier, probe_data, tiny_context):
    """A pipeline's output map and embedder survive the rebuilt head: forcing class 0 (3 of the 24 clean
    images) or embedding every image as class 2's text embedding (3 of 24) fixes the ensemble CACC."""
    k = len(tiny_context.classnames)
    force_0 = classifier.replace(output_map=lambda logits: logits + 1e3 * torch.eye(k)[0].to(logits))
    as_2 = classifier.replace(embedder=lambda images: classifier.class_weights[2].expand(len(images), -1))
    assert _cacc(classifier, probe_data) != pytest.approx(3 / 24)
    for clf in (force_0, as_2):
        expected = 3 / 24
        assert _cacc(clf, probe_data) == pytest.approx(expected)
        result = _probe("prompt_sensitivity", sets=["ensemble", "single"]).run(clf, probe_data, tiny_context)
        assert [r["cacc"] for r in result.tables["prompt_sensitivity"]] == pytest.approx([expected, expected])


def test_prompt_sensitivity_partial_paraphrases(classifier, probe_data, tiny_context):
    probe = _probe("prompt_sensitivity", sets=["paraphrased"], paraphrases={"circle": "round disc", "blob": "x"})
    names, templates, n = probe.prompts("paraphrased", tiny_context)
    assert n == 1 and names[0] == "round disc" and names[1:] == list(tiny_context.classnames[1:])
    assert probe.run(classifier, probe_data, tiny_context).tables["prompt_sensitivity"][0]["n_paraphrased"] == 1


def test_default_paraphrases_cover_the_world_without_reusing_the_name():
    assert set(DEFAULT_PARAPHRASES) == set(world.CLASSES)
    assert all(name not in para for name, para in DEFAULT_PARAPHRASES.items())


def test_prompt_sensitivity_config_errors_name_the_value():
    with pytest.raises(BenchError, match="unknown template set 'fancy'"):
        _probe("prompt_sensitivity", sets=["single", "fancy"])
    with pytest.raises(BenchError, match="sets is empty"):
        _probe("prompt_sensitivity", sets=[])
    with pytest.raises(BenchError, match=r"blank values for \['circle'\]"):
        _probe("prompt_sensitivity", paraphrases={"circle": " "})
    assert isinstance(_probe("prompt_sensitivity"), PromptSensitivity) and isinstance(_probe("textspan"), TextSpan)


def test_paraphrase_keeps_a_scene_class_colour_and_rewrites_its_shape():
    from bdbench_decomp.prompt_sensitivity import DEFAULT_PARAPHRASES, paraphrase

    assert paraphrase("circle", DEFAULT_PARAPHRASES) == "round disc"
    assert paraphrase("red circle", DEFAULT_PARAPHRASES) == "red round disc"
    assert paraphrase("golden retriever", DEFAULT_PARAPHRASES) == "golden retriever"
