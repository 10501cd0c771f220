"""The decomposition reproduces encode_image exactly (SPEC §4) and supports total-effect overrides."""

import open_clip
import pytest
import torch

from bench_core.decomposition import decompose, decompose_batched, mean_component_outputs
from bench_core.models import ClipModel


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def test_sum_equals_encode_image(tiny_model):
    x = torch.rand(8, 3, 16, 16)
    with torch.no_grad():
        ref = tiny_model.encode_image(x)
    d = decompose(tiny_model, x)
    assert d.heads.shape == (8, 2, 4, 32) and d.mlps.shape == (8, 2, 32) and d.embed.shape == (8, 32)
    assert rel_err(d.total(), ref) < 1e-4


def test_exact_with_layer_scale_and_trained_like_weights():
    torch.manual_seed(1)
    clip = open_clip.CLIP(embed_dim=16, vision_cfg=dict(image_size=16, patch_size=4, width=48, layers=3,
                                                        head_width=8, ls_init_value=0.3),
                          text_cfg=dict(context_length=8, width=16, heads=2, layers=1))
    for p in clip.visual.parameters():  # move away from the init so biases and LN affine matter
        p.data.add_(0.05 * torch.randn_like(p))
    model = ClipModel(clip, None, 16).eval()
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        ref = model.encode_image(x)
    assert rel_err(decompose(model, x).total(), ref) < 1e-4


def test_batched_matches_single(tiny_model):
    x = torch.rand(10, 3, 16, 16)
    a, b = decompose(tiny_model, x), decompose_batched(tiny_model, x, batch_size=3)
    assert torch.allclose(a.heads, b.heads, atol=1e-6) and torch.allclose(a.mlps, b.mlps, atol=1e-6)


def test_override_identity_is_noop_and_changes_downstream(tiny_model):
    x = torch.rand(4, 3, 16, 16)
    base = decompose(tiny_model, x)
    zero = decompose(tiny_model, x, overrides={("mlp", 0): torch.zeros(1, 5, 32)})
    # total effect: layer 1 sees the replaced stream, so its contributions change too
    assert torch.allclose(zero.mlps[:, 0], torch.zeros_like(zero.mlps[:, 0]), atol=1e-6)
    assert not torch.allclose(zero.heads[:, 1], base.heads[:, 1], atol=1e-5)


def _layer_scale_model() -> ClipModel:
    torch.manual_seed(2)
    clip = open_clip.CLIP(embed_dim=16, vision_cfg=dict(image_size=16, patch_size=4, width=32, layers=2,
                                                        head_width=8, ls_init_value=0.3),
                          text_cfg=dict(context_length=8, width=16, heads=2, layers=1))
    return ClipModel(clip, None, 16).eval()


@pytest.mark.parametrize("which", ["tiny", "layer_scale"])
def test_overriding_with_own_outputs_reproduces_the_decomposition(tiny_model, which):
    """The mean over a batch of one image is that image's own output: overriding every component with it (per
    image, stacked to (N, T, W)) must change nothing; in a layer-scale model this checks the units."""
    model = tiny_model if which == "tiny" else _layer_scale_model()
    x = torch.rand(5, 3, 16, 16)
    own = [mean_component_outputs(model, x[i:i + 1]) for i in range(len(x))]
    overrides = {c: torch.stack([o[c] for o in own]) for c in own[0]}
    n_layers = len(model.visual.transformer.resblocks)
    assert set(overrides) == {(k, l) for k in ("attn", "mlp") for l in range(n_layers)}
    base = decompose(model, x)
    for out in (decompose(model, x, overrides), decompose_batched(model, x, batch_size=2, overrides=overrides)):
        torch.testing.assert_close(out.total(), base.total(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.mlps, base.mlps, atol=1e-5, rtol=1e-4)
    # overriding with another image's outputs is not a no-op (the check above can fail)
    swapped = {c: o.roll(1, dims=0) for c, o in overrides.items()}
    assert not torch.allclose(decompose(model, x, swapped).total(), base.total(), atol=1e-3)


def test_mean_component_outputs_is_the_batch_mean(tiny_model):
    x = torch.rand(7, 3, 16, 16)
    means = mean_component_outputs(tiny_model, x, batch_size=3)
    own = [mean_component_outputs(tiny_model, x[i:i + 1]) for i in range(len(x))]
    assert means[("attn", 0)].shape == (5, 32)  # (T, W): CLS + 4 patches, width 32
    for c, value in means.items():
        torch.testing.assert_close(value, torch.stack([o[c] for o in own]).mean(0), atol=1e-6, rtol=1e-5)
    # on a batch of one, overriding with the mean equals no change
    one = x[:1]
    torch.testing.assert_close(decompose(tiny_model, one, mean_component_outputs(tiny_model, one)).total(),
                               decompose(tiny_model, one).total(), atol=1e-5, rtol=1e-4)


def test_unsupported_tower_is_a_clear_error():
    class Fake(torch.nn.Module):
        visual = torch.nn.Identity()

    model = ClipModel(torch.nn.Module(), None, 16)
    model.clip.visual = torch.nn.Identity()
    with pytest.raises(TypeError, match="VisionTransformer"):
        decompose(model, torch.rand(1, 3, 16, 16))
