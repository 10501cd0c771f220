"""``median_aware_patch``: a patch trigger built to survive a k x k median filter.

A median filter replaces each pixel by the median of its k x k window, so structures narrower than about
k / 2 pixels vanish — a pixel-level checkerboard (BadNet's default patch) is erased. A checkerboard of solid
blocks of side k + 1 keeps most of its pixels: every window centred well inside a block sees a majority of
that block's value. The attacker knows the defense and its ``kernel_size`` (``known_fields``); poisoning is
BadNet's (random location, target captions).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from bench_core import AdaptiveAttack, AttackConfig, RunContext, ThreatModel


class MedianAwareConfig(AttackConfig):
    patch_size: int = Field(8, ge=2)  # side of the patch (the default suite's BadNet patch: 8 px)


class MedianAwarePatch(AdaptiveAttack):
    name = "median_aware_patch"
    version = "0.1.0"
    Config = MedianAwareConfig
    locality = "local"
    plain = "badnet"
    defeats = "a block checkerboard of side kernel_size + 1 that the median filter keeps"
    summary = "patch of solid blocks wider than the median filter's window"
    known_fields: ClassVar[frozenset[str]] = frozenset({"kernel_size"})
    threat_model = ThreatModel(data="poisons a fraction of the fine-tune pairs",
                               knowledge="the median filter and its kernel size", reads=frozenset())

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return kind == "defense" and name == "example_median_filter"

    def block(self, ctx: RunContext) -> int:
        sizes = [int(t.config["kernel_size"]) for t in ctx.targets if "kernel_size" in t.config]
        return max(sizes, default=3) + 1

    def patch(self, ctx: RunContext) -> torch.Tensor:
        s, b = self.config.patch_size, self.block(ctx)
        yy, xx = torch.meshgrid(torch.arange(s) // b, torch.arange(s) // b, indexing="ij")
        return ((yy + xx) % 2).float().expand(3, s, s)

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        s = self.config.patch_size
        g = ctx.generator(f"{self.name}:location:{'train' if train else 'test'}")
        h, w = images.shape[-2:]
        ys = torch.randint(0, h - s + 1, (len(images),), generator=g).tolist()
        xs = torch.randint(0, w - s + 1, (len(images),), generator=g).tolist()
        out, patch = images.clone(), self.patch(ctx).to(images.dtype)
        for i, (y, x) in enumerate(zip(ys, xs)):
            out[i, :, y:y + s, x:x + s] = patch
        return out
