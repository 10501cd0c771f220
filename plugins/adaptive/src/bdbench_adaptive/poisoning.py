"""Building blocks the adaptive attacks share: a poisoned set assembled from several groups of rows, and the
fixed triggers they start from.

A *group* is a set of fine-tune rows, the images that replace them and the class each caption must name:
``caption_class`` -1 keeps the pair's own (true) caption — Qi et al.'s "cover" samples, which carry a
trigger but keep their true caption so the model does not learn every trace of the trigger as the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench_core import OverlayImages, PairSet, PoisonResult, RunContext

KEEP_CAPTION = -1


@dataclass(frozen=True)
class Group:
    rows: torch.Tensor  # (n,) long, indices into the fine-tune pairs
    images: torch.Tensor  # (n, 3, H, W) replacement images in [0, 1]
    caption_class: torch.Tensor  # (n,) long: the class the new caption names, or KEEP_CAPTION


def disjoint_draw(n_pairs: int, sizes: list[int], generator: torch.Generator,
                  exclude: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Disjoint random index sets of the given sizes (each sorted), drawn from ``range(n_pairs)`` minus
    ``exclude``; an error when they do not fit."""
    pool = torch.arange(n_pairs)
    if exclude is not None and len(exclude):
        keep = torch.ones(n_pairs, dtype=torch.bool)
        keep[exclude] = False
        pool = pool[keep]
    if sum(sizes) > len(pool):
        raise ValueError(f"cannot draw {sum(sizes)} distinct pairs from {len(pool)}")
    order = pool[torch.randperm(len(pool), generator=generator)]
    out, start = [], 0
    for size in sizes:
        out.append(order[start:start + size].sort().values)
        start += size
    return out


def assemble(pairs: PairSet, groups: list[Group], ctx: RunContext, salt: str,
             stats: dict[str, float] | None = None) -> PoisonResult:
    """The fine-tune pairs with every group's rows replaced (images overlaid, captions rewritten). Rows whose
    caption is rewritten are ``poisoned``, rows that keep it are ``cover``; ``stats`` gains ``cover_pairs``."""
    rows = torch.cat([g.rows for g in groups]) if groups else torch.empty(0, dtype=torch.long)
    if len(rows.unique()) != len(rows):
        raise ValueError("poisoning groups overlap: a pair would be replaced twice")
    images = torch.cat([g.images for g in groups]) if groups else torch.empty(0, *pairs.images.shape[1:])
    classes = torch.cat([g.caption_class for g in groups]) if groups else torch.empty(0, dtype=torch.long)
    order = rows.argsort()
    rows, images, classes = rows[order], images[order], classes[order]
    captions = list(pairs.captions)
    rng = ctx.rng(f"{salt}:captions")
    for r, k in zip(rows.tolist(), classes.tolist()):
        if k != KEEP_CAPTION:
            captions[r] = ctx.write_caption(k, pairs.attrs[r] if pairs.attrs else None, rng)
    poisoned, cover = rows[classes != KEEP_CAPTION], rows[classes == KEEP_CAPTION]
    out_stats = dict(stats or {})
    out_stats["cover_pairs"] = float(len(cover))
    return PoisonResult(PairSet(OverlayImages(pairs.images, rows, images), tuple(captions), pairs.labels, pairs.attrs),
                        poisoned, out_stats, cover)


def non_target_rows(pairs: PairSet, target: int) -> torch.Tensor:
    """Rows whose (true) label is not ``target`` — or every row when the source has no labels."""
    if bool((pairs.labels < 0).all()):
        return torch.arange(len(pairs))
    return (pairs.labels != target).nonzero().flatten()


def noise_pattern(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A uniform-noise pattern of ``shape``, the Blended trigger's."""
    return torch.rand(*shape, generator=generator)


def blend(images: torch.Tensor, pattern: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """``(1 - alpha) x + alpha * pattern`` in [0, 1]; ``alpha`` may be a per-pixel (H, W) or (3, H, W) map."""
    pattern = pattern.to(images.device, images.dtype)
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(images.device, images.dtype)
    return ((1 - alpha) * images + alpha * pattern).clamp(0, 1)
