"""What each attack promises beyond the shared contract: Label-Consistent's selection and PGD, ISSBA's
steganography metrics and sample-specific residual, BadCLIP's optimisation, the shared patch stamping."""

from __future__ import annotations

import pytest
import torch

from bench_core.interfaces import PairSet
from bench_core.metrics import psnr

from bdbench_attacks.badclip import BadCLIP
from bdbench_attacks.badnet import BadNet
from bdbench_attacks.issba import ISSBA
from bdbench_attacks.label_consistent import LabelConsistent, pgd_away_from_captions, target_indices
from bdbench_attacks.patches import paste, stamp
from bdbench_attacks.stegastamp import Encoder, StegaSettings, scale_for_psnr, train_stegastamp
from conftest import make_context



@pytest.fixture
def ctx(tiny_data, tiny_model):
    return make_context(tiny_data, model=tiny_model)


# --- Label-Consistent --------------------------------------------------------------------------------------

def lc(**config) -> LabelConsistent:
    return LabelConsistent({"patch_size": 4, "steps": 5, **config})


def test_lc_poisons_only_target_class_pairs_and_keeps_captions(tiny_data, ctx):
    pairs = tiny_data.finetune
    attack = lc(poison_rate=0.1)
    attack.load_state(attack.prepare(ctx))
    result = attack.poison(pairs, ctx)
    n_target = int((pairs.labels == attack.target_class).sum())
    assert (pairs.labels[result.poisoned] == attack.target_class).all()
    assert len(result.poisoned) == attack.n_poison(len(pairs)) == result.stats["n_poison"]
    assert result.stats["target_class_fraction"] == pytest.approx(len(result.poisoned) / n_target)
    assert result.pairs.captions == pairs.captions


def test_lc_caps_the_poison_count_at_the_target_class(tiny_data, ctx):
    pairs = tiny_data.finetune
    attack = lc(poison_rate=0.9)
    attack.load_state(attack.prepare(ctx))
    result = attack.poison(pairs, ctx)
    assert len(result.poisoned) == int((pairs.labels == attack.target_class).sum())
    assert result.stats["target_class_fraction"] == 1.0


def test_lc_selects_by_caption_on_unlabelled_pairs(tiny_data, ctx):
    pairs = tiny_data.finetune
    unlabelled = PairSet(pairs.images, pairs.captions, torch.full_like(pairs.labels, -1), pairs.attrs)
    found = target_indices(unlabelled, 0, ctx.classnames)
    assert len(found) > 0
    assert all(ctx.classnames[0] in pairs.captions[i].lower() for i in found.tolist())
    assert torch.equal(found, target_indices(pairs, 0, ctx.classnames))  # the world's captions name the shape


def test_lc_pgd_stays_in_the_ball_and_lowers_the_caption_similarity(tiny_data, tiny_model):
    pairs = tiny_data.finetune
    idx = (pairs.labels == 0).nonzero().flatten()[:8]
    images = pairs.images[idx]
    eps = 8 / 255
    adv, before, after = pgd_away_from_captions(tiny_model, images, [pairs.captions[i] for i in idx.tolist()],
                                                eps=eps, step_size=2 / 255, steps=10, batch_size=5)
    assert adv.shape == images.shape and adv.min() >= 0 and adv.max() <= 1
    assert (adv - images).abs().max() <= eps + 1e-6
    assert (adv != images).any()
    assert after.mean() < before.mean()
    assert (after <= before + 1e-6).all()


def test_lc_poisoned_images_are_pgd_plus_patch_and_test_trigger_is_the_patch_only(tiny_data, ctx):
    pairs = tiny_data.finetune
    s, eps = 4, 8 / 255
    attack = lc(eps=eps, location="bottom_right", patch_size=s)
    attack.load_state(attack.prepare(ctx))
    result = attack.poison(pairs, ctx)
    outside = torch.ones_like(pairs.images[0], dtype=torch.bool)
    outside[:, -s:, -s:] = False
    delta = (result.pairs.images[:] - pairs.images)[result.poisoned]
    assert delta[:, outside].abs().max() <= eps + 1e-6
    assert torch.equal(result.pairs.images[result.poisoned][:, :, -s:, -s:],
                       attack.state["patch"].expand(len(result.poisoned), -1, -1, -1))
    assert result.stats["pgd_similarity_after"] < result.stats["pgd_similarity_before"]

    test_images = tiny_data.evaluation.images[:6]
    triggered = attack.apply_trigger(test_images, ctx)
    assert torch.equal(triggered[:, outside], test_images[:, outside])


# --- ISSBA -------------------------------------------------------------------------------------------------

def test_issba_reports_its_metrics_and_stamps_sample_specific_residuals(tiny_data, ctx):
    attack = ISSBA({"steps": 40, "n_held": 16})
    state = attack.prepare(ctx)
    for key in ("metric_bit_accuracy", "metric_stego_psnr_db"):
        assert state[key].ndim == 0
    assert 0 <= float(state["metric_bit_accuracy"]) <= 1 and float(state["metric_stego_psnr_db"]) > 0
    attack.load_state(state)
    images = tiny_data.evaluation.images[:8]
    residual = attack.apply_trigger(images, ctx) - images
    assert not torch.allclose(residual[0], residual[1]), "the residual should depend on the image"
    assert torch.allclose(attack.apply_trigger(images[:3], ctx) - images[:3], residual[:3], atol=1e-6), \
        "an image's trigger must not depend on its batch"


@pytest.mark.parametrize("budget", [24.0, 30.0])
@pytest.mark.parametrize("train_at_budget", [True, False])
def test_issba_residual_is_rescaled_to_its_psnr_budget(tiny_data, ctx, budget, train_at_budget):
    attack = ISSBA({"steps": 40, "n_held": 16, "psnr_budget_db": budget, "train_at_budget": train_at_budget,
                    "l2_weight": 0.0 if train_at_budget else 30.0})
    state = attack.prepare(ctx)
    assert abs(float(state["metric_stego_psnr_db"]) - budget) < 0.01, "held-out PSNR must sit on the budget"
    assert float(state["scale"]) > 0 and float(state["metric_residual_scale"]) == float(state["scale"])
    attack.load_state(state)
    images = tiny_data.finetune.images[:64]
    measured = psnr(images, attack.apply_trigger(images, ctx))
    assert abs(measured - budget) < 1.5, f"other images of the same world should land near the budget: {measured}"


def test_issba_without_a_budget_keeps_the_trained_residual(tiny_data, ctx):
    state = ISSBA({"steps": 40, "n_held": 16, "psnr_budget_db": None, "train_at_budget": False,
                   "l2_weight": 30.0}).prepare(ctx)
    assert float(state["scale"]) == 1.0
    assert float(state["metric_stego_psnr_db"]) == float(state["metric_trained_psnr_db"])


def test_encoder_with_an_rms_holds_every_residual_at_it_and_keeps_it_in_its_state():
    encoder = Encoder(bits=4, width=4, rms=0.03)
    images = torch.rand(6, 3, 16, 16)
    residual = encoder(images, torch.randint(0, 2, (6, 4)).float())
    rms = residual.pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(rms, torch.full((6,), 0.03), atol=1e-6)
    state = encoder.state_dict()
    assert float(state["rms"]) == pytest.approx(0.03)
    restored = Encoder(bits=4, width=4, rms=0.03)
    restored.load_state_dict(state)
    assert torch.equal(restored(images, torch.ones(6, 4)), encoder(images, torch.ones(6, 4)))
    assert "rms" not in Encoder(bits=4, width=4).state_dict(), "without an rms the encoder is the free one"


def test_issba_trained_at_its_budget_lands_on_it(tiny_data, ctx):
    state = ISSBA({"steps": 40, "n_held": 16, "psnr_budget_db": 28.0, "train_at_budget": True}).prepare(ctx)
    assert abs(float(state["metric_stego_psnr_db"]) - 28.0) < 0.01
    # clamping to [0, 1] can only shrink a residual, so the trained PSNR is at or above the budget
    assert 28.0 <= float(state["metric_trained_psnr_db"]) < 29.0
    assert float(state["encoder.rms"]) == pytest.approx(10 ** (-28.0 / 20))


def test_issba_training_at_a_budget_needs_one():
    with pytest.raises(ValueError, match="train_at_budget needs a psnr_budget_db"):
        ISSBA({"psnr_budget_db": None, "train_at_budget": True}).settings()


def test_scale_for_psnr_solves_the_budget_and_rejects_an_unreachable_one():
    images = torch.rand(8, 3, 16, 16) * 0.5 + 0.25  # away from the clamp

    class FixedResidual(torch.nn.Module):
        def forward(self, x, bits):
            return torch.full_like(x, 0.01)  # PSNR 40 dB at scale 1: MSE 1e-4

    scale = scale_for_psnr(FixedResidual(), images, torch.zeros(4), 34.0)
    assert abs(scale - 10 ** (6 / 20)) < 1e-3  # 6 dB lower PSNR = residual x 10^(6/20)
    with pytest.raises(ValueError, match="out of reach"):
        scale_for_psnr(FixedResidual(), images, torch.zeros(4), 500.0)

    class ZeroResidual(torch.nn.Module):
        def forward(self, x, bits):
            return torch.zeros_like(x)

    with pytest.raises(ValueError, match="zero residual"):
        scale_for_psnr(ZeroResidual(), images, torch.zeros(4), 30.0)


@pytest.mark.slow  # trains the encoder-decoder for 300 steps (~30 s alone, minutes on a loaded machine)
def test_stegastamp_learns_to_hide_the_secret(tiny_data):
    images = tiny_data.finetune.images
    g = torch.Generator().manual_seed(0)
    secret = torch.randint(0, 2, (20,), generator=g).float()
    settings = StegaSettings(bits=20, width=8, steps=300, batch_size=32, lr=3e-3, l2_weight=100.0, l2_start=0.15,
                             l2_full=0.6, l2_gate=0.9)
    _, _, report = train_stegastamp(images[16:], images[:16], secret, settings, g)
    assert report.bit_accuracy >= 0.9
    assert report.clean_bit_accuracy < 0.75, "the decoder must read the residual, not emit the secret"
    assert report.psnr_db >= 25


# --- BadCLIP -----------------------------------------------------------------------------------------------

def test_badclip_optimisation_lowers_its_loss(ctx):
    attack = BadCLIP({"patch_size": 4, "steps": 30, "batch_size": 16, "eval_images": 32, "lr": 0.05})
    state = attack.prepare(ctx)
    assert state["patch"].shape == (3, 4, 4) and state["patch"].min() >= 0 and state["patch"].max() <= 1
    assert float(state["metric_loss_end"]) < float(state["metric_loss_start"])


def test_badclip_is_seeded(ctx, tiny_data, tiny_model):
    config = {"patch_size": 4, "steps": 5, "batch_size": 8, "eval_images": 8}
    a, b = BadCLIP(config).prepare(ctx), BadCLIP(config).prepare(ctx)
    assert torch.equal(a["patch"], b["patch"])
    other = BadCLIP(config).prepare(make_context(tiny_data, seed=1, model=tiny_model))
    assert not torch.equal(a["patch"], other["patch"])


# --- shared patch stamping ---------------------------------------------------------------------------------

def test_paste_matches_stamp_and_passes_gradients():
    images = torch.rand(3, 3, 16, 16)
    patch = torch.rand(3, 4, 4, requires_grad=True)
    where = ([0, 5, 12], [12, 3, 0])
    pasted = paste(images, patch, *where)
    for i, (y, x) in enumerate(zip(*where)):
        assert torch.equal(pasted[i, :, y:y + 4, x:x + 4], patch.detach())
    pasted.sum().backward()
    assert torch.equal(patch.grad, torch.full_like(patch, 3.0))
    fixed = stamp(images, patch.detach(), "center", torch.Generator())
    assert torch.equal(fixed[:, :, 6:10, 6:10], patch.detach().expand(3, -1, -1, -1))


def test_badnet_and_label_consistent_draw_different_patches(ctx):
    """Random (noise) patches are salted by attack name; the default checkerboard is deterministic by design."""
    noise = {"pattern": "noise"}
    assert not torch.equal(BadNet(noise).prepare(ctx)["patch"], LabelConsistent(noise).prepare(ctx)["patch"])


def test_four_corners_stamps_every_corner_and_nothing_else():
    from bdbench_attacks.patches import stamp

    images = torch.zeros(2, 3, 16, 16)
    patch = torch.ones(3, 3, 3)
    out = stamp(images, patch, "four_corners", torch.Generator())
    expected = torch.zeros(16, 16)
    for ys in (slice(0, 3), slice(13, 16)):
        for xs in (slice(0, 3), slice(13, 16)):
            expected[ys, xs] = 1
    assert torch.equal(out, expected.expand(2, 3, 16, 16))
    assert images.abs().sum() == 0  # the input is not modified
    with pytest.raises(ValueError, match="overlaps itself"):
        stamp(images, torch.ones(3, 9, 9), "four_corners", torch.Generator())


def test_lc_default_stamps_the_four_corners(tiny_data, ctx):
    attack = LabelConsistent({"patch_size": 4, "eps": 8 / 255, "steps": 2})
    assert attack.config.location == "four_corners"
    attack.load_state(attack.prepare(ctx))
    test_images = tiny_data.evaluation.images[:3]
    triggered = attack.apply_trigger(test_images, ctx)
    patch = attack.state["patch"].expand(3, -1, -1, -1)
    for ys in (slice(0, 4), slice(-4, None)):
        for xs in (slice(0, 4), slice(-4, None)):
            assert torch.equal(triggered[:, :, ys, xs], patch)
    assert torch.equal(triggered[:, :, 4:-4, 4:-4], test_images[:, :, 4:-4, 4:-4])
