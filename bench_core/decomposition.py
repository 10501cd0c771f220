"""Exact decomposition of a CLIP ViT image embedding into direct contributions (Gandelsman et al., 2024).

For an open_clip ``VisionTransformer`` with CLS pooling, the unnormalised image embedding is

    encode_image(x) = embed + sum_l sum_h head[l, h] + sum_l mlp[l]

where ``embed`` is the (ln_pre-normalised) CLS input, ``head[l, h]`` is head h's attention output at the CLS
token (sum over tokens of alpha * v, through head h's slice of W_O) and ``mlp[l]`` the MLP output at CLS.
Every term is pushed through ``ln_post`` linearised with the sample's actual mean and standard deviation of
the final CLS state (so the sum is exact, not an approximation) and through the projection. Two bookkeeping
choices, both exact: ``out_proj.bias`` is split equally over a layer's heads (as TEXTSPAN does), and
``ln_post``'s bias is put in the ``embed`` term.

All terms come from one batched forward pass (:func:`decompose`); ``overrides`` replaces a component's output
at every token inside that pass (total-effect ablation: later layers see the replacement).
:func:`mean_component_outputs` gives the clean per-token mean outputs such overrides use for mean-ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bench_core.models import ClipModel

Component = tuple[Literal["attn", "mlp"], int]
"""("attn", layer) or ("mlp", layer), layers counted from 0."""


@dataclass
class Decomposition:
    """Direct contributions in embedding space. ``embed``: (N, D); ``heads``: (N, L, H, D); ``mlps``: (N, L, D)."""

    embed: torch.Tensor
    heads: torch.Tensor
    mlps: torch.Tensor

    def total(self) -> torch.Tensor:
        """Their sum, (N, D): equal to ``encode_image`` up to float rounding."""
        return self.embed + self.heads.sum(dim=(1, 2)) + self.mlps.sum(dim=1)

    def clone(self) -> "Decomposition":
        return Decomposition(self.embed.clone(), self.heads.clone(), self.mlps.clone())

    def mean(self) -> "Decomposition":
        """Per-component mean over the batch, keeping a leading batch dim of 1 (prototypes)."""
        return Decomposition(self.embed.mean(0, keepdim=True), self.heads.mean(0, keepdim=True),
                             self.mlps.mean(0, keepdim=True))

    def to(self, device: torch.device | str) -> "Decomposition":
        return Decomposition(self.embed.to(device), self.heads.to(device), self.mlps.to(device))

    @property
    def n_layers(self) -> int:
        return self.heads.shape[1]

    @property
    def n_heads(self) -> int:
        return self.heads.shape[2]


def _check_supported(model: ClipModel) -> None:
    visual = model.visual
    if not hasattr(visual, "transformer") or not hasattr(visual, "_embeds"):
        raise TypeError(f"decomposition supports open_clip VisionTransformer towers, not {type(visual).__name__}")
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        raise TypeError("decomposition needs CLS-token pooling (pool_type='tok', no attentional pooler)")
    block = visual.transformer.resblocks[0]
    if not isinstance(getattr(block, "attn", None), torch.nn.MultiheadAttention):
        raise TypeError("decomposition needs blocks with nn.MultiheadAttention (open_clip ResidualAttentionBlock)")


@torch.no_grad()
def decompose(model: ClipModel, images: torch.Tensor,
              overrides: dict[Component, torch.Tensor] | None = None) -> Decomposition:
    """Decompose the embeddings of ``images`` ((N, 3, H, W) in [0, 1]) in one forward pass.

    ``overrides[(kind, layer)]`` is a (T, W) or (N, T, W) tensor that replaces that component's residual-stream
    output (all tokens, before layer scale) during the pass; its CLS row is reported as the contribution
    (split equally over heads for attention).
    """
    return _forward(model, images, overrides or {}, None)


def decompose_differentiable(model: ClipModel, images: torch.Tensor) -> Decomposition:
    """:func:`decompose` with autograd on: gradients flow from the terms to the model (and the images) — for a
    training loss on the decomposition (e.g. an attacker's penalty on head contributions)."""
    return _forward(model, images, {}, None)


def _forward(model: ClipModel, images: torch.Tensor, overrides: dict[Component, torch.Tensor],
             sums: dict[Component, torch.Tensor] | None) -> Decomposition:
    """The pass behind :func:`decompose`; when ``sums`` is a dict, each component's output (all tokens, before
    layer scale, after any override) summed over the batch is added into ``sums[component]`` ((T, W))."""
    _check_supported(model)
    visual = model.visual
    x = visual._embeds(model.normalize(images))  # (N, T, W), ln_pre applied
    n, _, width = x.shape
    embed = x[:, 0]
    head_terms, mlp_terms = [], []

    def record(component: Component, out: torch.Tensor) -> None:
        if sums is not None:
            total = out.sum(0)
            sums[component] = sums[component] + total if component in sums else total

    for layer, block in enumerate(visual.transformer.resblocks):
        attn: torch.nn.MultiheadAttention = block.attn
        n_heads = attn.num_heads
        head_dim = width // n_heads
        if ("attn", layer) in overrides:
            out = overrides[("attn", layer)].expand(n, -1, -1)
            cls_heads = (out[:, 0] / n_heads).unsqueeze(1).expand(n, n_heads, width)
        else:
            h = block.ln_1(x)
            q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
            q, k, v = (t.reshape(n, -1, n_heads, head_dim).transpose(1, 2) for t in (q, k, v))
            ctx = F.scaled_dot_product_attention(q, k, v)  # (N, H, T, d)
            out = F.linear(ctx.transpose(1, 2).reshape(n, -1, width), attn.out_proj.weight, attn.out_proj.bias)
            w_o = attn.out_proj.weight.view(width, n_heads, head_dim)
            cls_heads = torch.einsum("nhd,whd->nhw", ctx[:, :, 0], w_o) + attn.out_proj.bias / n_heads
        record(("attn", layer), out)
        out = block.ls_1(out)
        cls_heads = block.ls_1(cls_heads)
        x = x + out
        if ("mlp", layer) in overrides:
            m = overrides[("mlp", layer)].expand(n, -1, -1)
        else:
            m = block.mlp(block.ln_2(x))
        record(("mlp", layer), m)
        m = block.ls_2(m)
        x = x + m
        head_terms.append(cls_heads)
        mlp_terms.append(m[:, 0])
    heads = torch.stack(head_terms, dim=1)  # (N, L, H, W)
    mlps = torch.stack(mlp_terms, dim=1)  # (N, L, W)
    return _through_ln_post(visual, x[:, 0], embed, heads, mlps)


@torch.no_grad()
def mean_component_outputs(model: ClipModel, images: torch.Tensor,
                           batch_size: int = 256) -> dict[Component, torch.Tensor]:
    """Per-token mean over ``images`` of every component's residual-stream output in the unablated model:
    ``{("attn", l) | ("mlp", l): (T, W)}`` on the model's device, in the units :func:`decompose` takes as
    ``overrides`` (before layer scale). Overriding with these is total-effect mean-ablation."""
    sums: dict[Component, torch.Tensor] = {}
    for i in range(0, len(images), batch_size):
        _forward(model, images[i:i + batch_size], {}, sums)
    return {component: total / len(images) for component, total in sums.items()}


def _through_ln_post(visual, final: torch.Tensor, embed: torch.Tensor, heads: torch.Tensor,
                     mlps: torch.Tensor) -> Decomposition:
    ln = visual.ln_post
    std = (final.var(dim=-1, unbiased=False, keepdim=True) + ln.eps).sqrt()  # (N, 1)

    def linear_part(term: torch.Tensor) -> torch.Tensor:
        centred = term - term.mean(dim=-1, keepdim=True)
        scaled = centred / std.view(-1, *([1] * (term.ndim - 2)), 1) * ln.weight
        return scaled @ visual.proj if visual.proj is not None else scaled

    bias = ln.bias @ visual.proj if visual.proj is not None else ln.bias
    return Decomposition(embed=linear_part(embed) + bias, heads=linear_part(heads), mlps=linear_part(mlps))


@torch.no_grad()
def decompose_batched(model: ClipModel, images: torch.Tensor, batch_size: int = 256,
                      overrides: dict[Component, torch.Tensor] | None = None) -> Decomposition:
    """:func:`decompose` over ``images`` in batches; results on the CPU. ``overrides`` as in :func:`decompose`;
    per-image ones (first dim N = len(images)) are sliced with the batch, others broadcast."""
    overrides = overrides or {}

    def batch(i: int) -> dict[Component, torch.Tensor]:
        return {c: (o[i:i + batch_size] if o.ndim == 3 and len(o) == len(images) else o) for c, o in overrides.items()}

    parts = [decompose(model, images[i:i + batch_size], batch(i)).to("cpu") for i in range(0, len(images), batch_size)]
    return Decomposition(torch.cat([p.embed for p in parts]), torch.cat([p.heads for p in parts]),
                         torch.cat([p.mlps for p in parts]))
