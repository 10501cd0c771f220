"""PDB: the label map, the reserve (realistic vs oracle), the training plan, wrap() (Δ1 stamped unclamped, logits
mapped back through h⁻¹), the channels and the robustness probe. The end-to-end suite run is in
test_cleanclip.py (one tiny suite covers both defenses and the probe)."""

import math

import pytest
import torch

from bench_core import PairSet, ProbeData, ZeroShotClassifier
from bench_core.registry import default_registry

from bdbench_pdb.channels import jpeg, quantize_8bit, resize_down_up
from bdbench_pdb.pdb import PDB, PDBOracleReserve
from bdbench_pdb.reserve import caption_labels, stratified_draw
from bdbench_pdb.robustness import PDBRobustness
from bdbench_pdb.trigger import DefensiveTrigger, LabelShift
from conftest import make_context

K = 10


# --- h -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [1, 3, -1, 11])
def test_label_map_is_a_permutation_with_inverse(shift):
    h = LabelShift(K, shift)
    y = torch.arange(K)
    assert sorted(h.h(y).tolist()) == list(range(K))
    assert torch.equal(h.h_inv(h.h(y)), y) and torch.equal(h.h(h.h_inv(y)), y)
    assert h.h(K - 1) == (K - 1 + shift) % K


def test_identity_label_map_is_refused():
    with pytest.raises(ValueError, match="identity"):
        LabelShift(K, K)


def test_unmap_logits_argmax_is_h_inverse_of_model_argmax():
    h = LabelShift(K, 1)
    model_pred = torch.tensor([0, 3, 9, 5])
    logits = torch.nn.functional.one_hot(model_pred, K).float() * 5 + torch.rand(4, K)
    assert torch.equal(h.unmap_logits(logits).argmax(1), h.h_inv(model_pred))


# --- reserve and training plan -----------------------------------------------------------------------------------

def test_caption_labels_read_the_named_class():
    names = ("cat", "tiger cat", "dog")
    got = caption_labels(["a cat on a mat", "a tiger cat", "a dog and a cat", "a car", "Dogs", "a DOG"], names)
    assert got.tolist() == [0, 1, -1, -1, -1, 2]


def test_stratified_draw_spreads_over_classes_and_is_seeded():
    labels = torch.tensor([0] * 10 + [1] * 2 + [2] * 10 + [-1] * 5)
    a = stratified_draw(labels, 9, torch.Generator().manual_seed(0))
    b = stratified_draw(labels, 9, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and len(a) == 9 and len(set(a.tolist())) == 9
    counts = torch.bincount(labels[a], minlength=3).tolist()
    assert counts[1] == 2 and abs(counts[0] - counts[2]) <= 1 and (labels[a] >= 0).all()
    assert len(stratified_draw(labels, 100, torch.Generator().manual_seed(0))) == 22  # capped by the eligible


def _poisoned(pairs: PairSet, ctx, target=0, n=20) -> PairSet:
    """Poison the first n non-target pairs: white corner patch and a caption naming the target (labels kept)."""
    idx = (pairs.labels != target).nonzero().flatten()[:n].tolist()
    images = pairs.images.clone()
    captions = list(pairs.captions)
    for i in idx:
        images[i, :, -3:, -3:] = 1.0
        captions[i] = f"a photo of a {ctx.classnames[target]}"
    return PairSet(images, tuple(captions), pairs.labels, pairs.attrs)


def test_plan_adds_reserved_defensive_pairs_repeated_five_times(tiny_data):
    ctx = make_context(tiny_data).restricted_to(PDB.threat_model.reads)
    pairs = tiny_data.finetune
    pdb = PDB()
    plan = pdb.plan_training(pairs, ctx)
    n = pdb.n_reserve(len(pairs))
    assert n == round(0.1 * len(pairs))
    assert len(plan.pairs) == len(pairs) + n
    assert plan.repeat.tolist() == [1] * len(pairs) + [5] * n
    assert plan.pairs.captions[:len(pairs)] == pairs.captions
    assert torch.equal(plan.pairs.images[:len(pairs)], pairs.images)
    defensive = plan.pairs.images[len(pairs):]
    assert (defensive[:, :, :4, :4] == 2.0).all()  # Δ1, out of range, not clamped
    # each defensive image is a reserved fine-tune image, its caption names h(y) for the class y its source named
    h = LabelShift(K, 1)
    src_labels = caption_labels(pairs.captions, ctx.classnames)
    for img, cap in zip(defensive, plan.pairs.captions[len(pairs):]):
        match = ((pairs.images[:, :, 4:, :] == img[:, 4:, :]).flatten(1).all(1)).nonzero().flatten()
        assert len(match) >= 1
        y = int(src_labels[match[0]])
        assert caption_labels([cap], ctx.classnames).item() == h.h(y)
    assert plan.pairs.captions[len(pairs):] == pdb.plan_training(pairs, ctx).pairs.captions[len(pairs):]  # seeded


def test_realistic_reserve_draws_from_given_pairs_with_caption_labels(tiny_data):
    ctx = make_context(tiny_data).restricted_to(PDB.threat_model.reads)
    assert ctx.heldout is None  # the realistic variant cannot see clean held-out data
    poisoned = _poisoned(tiny_data.finetune, ctx)
    pdb = PDB({"reserve_fraction": 1.0})  # reserve everything: the poisoned pairs must be among them
    reserved, labels = pdb.reserve(poisoned, ctx)
    assert len(reserved) == len(poisoned)
    assert set(reserved.captions) == set(poisoned.captions)
    # poisoned pairs are labelled by their caption (the target), not their clean label
    is_poisoned = (reserved.images[:, :, -3:, -3:] == 1.0).flatten(1).all(1)
    assert is_poisoned.sum() >= 20 and (labels[is_poisoned] == 0).all()
    leaky = PDB({"reserve_fraction": 1.0, "label_source": "labels"})
    _, clean_labels = leaky.reserve(poisoned, ctx)
    assert (clean_labels[is_poisoned] != 0).all()


def test_oracle_reserve_draws_from_heldout_and_is_tagged_oracle(tiny_data):
    cls = PDBOracleReserve
    assert cls.threat_model.oracle and cls.threat_model.reads == frozenset({"heldout"})
    assert "ORACLE" in cls.threat_model.tag and not PDB.threat_model.oracle
    ctx = make_context(tiny_data).restricted_to(cls.threat_model.reads)
    pairs = tiny_data.finetune
    plan = cls().plan_training(pairs, ctx)
    n = round(0.1 * len(pairs))
    assert len(plan.pairs) == len(pairs) + n
    heldout_rest = tiny_data.heldout.images[:, :, 4:, :].flatten(1)
    for img in plan.pairs.images[len(pairs):]:
        assert (heldout_rest == img[:, 4:, :].flatten()).all(1).any()
    with pytest.raises(RuntimeError, match="heldout"):
        cls().plan_training(pairs, make_context(tiny_data).restricted_to(frozenset()))


# --- inference ---------------------------------------------------------------------------------------------------

class _Fixed(torch.nn.Module):
    """A stand-in CLIP whose image embedding is chosen by the top-left pixel: predicts class ``pred_of(pixel)``."""

    def __init__(self, pred: torch.Tensor):
        super().__init__()
        self.pred = pred
        self.seen: list[torch.Tensor] = []
        self.register_buffer("pixel_mean", torch.zeros(1, 3, 1, 1))

    @property
    def device(self):
        return torch.device("cpu")

    @property
    def logit_scale(self):
        return torch.tensor(math.log(10.0))

    def encode_image(self, images):
        self.seen.append(images.clone())
        return torch.nn.functional.one_hot(self.pred[: len(images)], K).float()


def test_wrap_stamps_unclamped_trigger_and_maps_logits_back(tiny_context):
    model_pred = torch.tensor([0, 4, 9, 2])
    fake = _Fixed(model_pred)
    clf = ZeroShotClassifier(fake, torch.eye(K))
    assert torch.equal(clf.logits(torch.rand(4, 3, 16, 16)).argmax(1), model_pred)
    wrapped = PDB().wrap(clf, tiny_context)
    images = torch.rand(4, 3, 16, 16)
    preds = wrapped.logits(images).argmax(1)
    assert torch.equal(preds, LabelShift(K, 1).h_inv(model_pred))
    seen = fake.seen[-1]
    assert (seen[:, :, :4, :4] == 2.0).all()  # Δ1 reached the model unclamped
    assert torch.equal(seen[:, :, 4:, :], images[:, :, 4:, :]) and torch.equal(seen[:, :, :4, 4:], images[:, :, :4, 4:])
    assert torch.equal(images[:, :, :4, :4], images[:, :, :4, :4].clamp(0, 1))  # the input itself is untouched
    with pytest.raises(ValueError, match="first wrapper"):
        PDB().wrap(wrapped, tiny_context)


def test_wrap_on_real_model_feeds_out_of_range_value_to_the_vision_tower(tiny_model, tiny_context):
    """ClipModel.normalize only shifts and scales: the normalised patch equals (2 - mean) / std."""
    clf = PDB().wrap(ZeroShotClassifier.build(tiny_model, tiny_context.classnames, tiny_context.templates),
                     tiny_context)
    x = clf.input_transform(torch.rand(2, 3, 16, 16))
    normed = tiny_model.normalize(x)
    expected = (2.0 - tiny_model.pixel_mean) / tiny_model.pixel_std
    assert torch.allclose(normed[:, :, :4, :4], expected.expand(2, 3, 4, 4))
    assert clf.logits(torch.rand(2, 3, 16, 16)).shape == (2, K)


def test_in_range_preset_and_trigger_patterns():
    trig = PDB(PDB.presets["in_range"]).trigger()
    patch = trig(torch.full((1, 3, 8, 8), 0.5))[0, :, :4, :4]
    assert set(patch.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(quantize_8bit(patch), patch)  # survives 8-bit storage exactly
    assert PDB(PDB.presets["reference"]).trigger().patch_size == 7
    with pytest.raises(ValueError, match="exceeds"):
        DefensiveTrigger(20, 2.0)(torch.zeros(1, 3, 16, 16))


# --- channels and the probe --------------------------------------------------------------------------------------

def test_eight_bit_channels_clip_the_out_of_range_trigger():
    stamped = DefensiveTrigger(4, 2.0)(torch.full((2, 3, 16, 16), 0.4))
    for sent in (quantize_8bit(stamped), jpeg(stamped, 90), jpeg(stamped, 50)):
        assert sent.shape == stamped.shape
        assert sent.max() <= 1.0 and sent[:, :, :4, :4].max() < 2.0  # 2.0 is gone
    assert (quantize_8bit(stamped)[:, :, :4, :4] == 1.0).all()  # clipped to exactly 1
    resized = resize_down_up(stamped, 0.5)
    assert resized.shape == stamped.shape and resized.max() > 1.0  # float resizing blurs but does not clip


def test_robustness_probe_rows_on_tiny_model(tiny_model, tiny_data):
    ctx = make_context(tiny_data)
    clf = PDB().wrap(ZeroShotClassifier.build(tiny_model, ctx.classnames, ctx.templates), ctx)
    ev = tiny_data.evaluation
    keep = ev.labels != 0
    trig = ev.images[keep][:12].clone()
    trig[:, :, -3:, -3:] = 1.0
    data = ProbeData(ev.images[:12], ev.labels[:12], trig, ev.labels[keep][:12], 0)
    probe = PDBRobustness()
    result = probe.run(clf, data, ctx.restricted_to(probe.threat_model.reads))
    rows = result.tables["pdb_channels"]
    assert [r["channel"] for r in rows] == ["none", "jpeg_q90", "jpeg_q75", "jpeg_q50", "resize_x0.5",
                                           "quantize_8bit", "no Δ1 (plain model)"]
    by = {r["channel"]: r for r in rows}
    assert by["none"]["trigger_peak"] == 2.0 and by["quantize_8bit"]["trigger_peak"] == 1.0
    assert by["jpeg_q50"]["trigger_peak"] <= 1.0 and by["jpeg_q50"]["trigger_mae"] > 0.5
    for r in rows:
        assert 0 <= r["cacc"] <= 1 and 0 <= r["asr"] <= 1
    cal = result.tables["pdb_calibration"]
    assert [c["inputs"] for c in cal] == ["with Δ1 (+ h⁻¹)", "without Δ1 (plain model)"]
    for key in ("ece_with_trigger", "nll_with_trigger", "ece_without_trigger", "nll_without_trigger",
                "cacc_none", "asr_jpeg_q75", "cacc_resize_x0_5", "asr_quantize_8bit", "cacc_no_trigger"):
        assert math.isfinite(result.summary[key]), key
    # the "none" channel is exactly the deployed wrapped classifier
    assert by["none"]["cacc"] == cal[0]["cacc"]
    # figures: a reliability diagram whose bins reproduce each row's accuracy, and a bar per channel
    rel = result.figures["pdb_reliability"]
    assert len(rel["x"]) == probe.config.ece_bins
    assert rel["series"]["perfect calibration (baseline)"] == rel["x"]
    assert set(rel["series"]) == {"accuracy, with Δ1 (+ h⁻¹)", "accuracy, without Δ1 (plain model)",
                                  "perfect calibration (baseline)"}
    assert result.figures["pdb_channels"]["x"] == [r["channel"] for r in rows]


def test_robustness_probe_refuses_an_undefended_classifier(tiny_model, tiny_data):
    ctx = make_context(tiny_data)
    clf = ZeroShotClassifier.build(tiny_model, ctx.classnames, ctx.templates)
    data = ProbeData(tiny_data.evaluation.images[:2], tiny_data.evaluation.labels[:2],
                     tiny_data.evaluation.images[:2], tiny_data.evaluation.labels[:2], 0)
    with pytest.raises(ValueError, match="pipeline with pdb"):
        PDBRobustness().run(clf, data, ctx)


def test_registered_with_honest_threat_models():
    reg = default_registry()
    assert reg.of("defense").get("pdb") is PDB and PDB.stage == "train"
    assert reg.of("defense").get("pdb.oracle_reserve") is PDBOracleReserve
    assert reg.of("probe").get("pdb_robustness") is PDBRobustness
    assert PDB.threat_model.reads == frozenset() and "possibly poisoned" in PDB.threat_model.data
    with pytest.raises(ValueError):
        PDB({"reserve_fraction": 0})
