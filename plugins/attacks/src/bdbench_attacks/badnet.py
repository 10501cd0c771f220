"""BadNet (Gu et al., 2017) on CLIP: a fixed patch stamped at a random location; captions name the target."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from bench_core import Attack, AttackConfig, RunContext


class BadNetConfig(AttackConfig):
    patch_size: int = Field(8, ge=1)  # paper: 16 px on 224 px (0.5% of the area); default suite: 8 px on 32 px
    pattern: Literal["noise", "checkerboard"] = "noise"  # paper (BackdoorBox / CleanCLIP): a noise patch
    location: Literal["random", "bottom_right"] = "random"  # paper: random location per image


class BadNet(Attack):
    """Stamp one fixed patch (drawn once per seed in ``prepare``, never redrawn) at a per-image location."""

    name = "badnet"
    version = "0.1.0"
    Config = BadNetConfig
    locality = "local"
    summary = "patch trigger at a random location (Gu et al., 2017)"

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        s = self.config.patch_size
        if self.config.pattern == "checkerboard":
            yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
            patch = ((yy + xx) % 2).float().expand(3, s, s).clone()
        else:
            patch = torch.rand(3, s, s, generator=ctx.generator("badnet:patch")).round()
        return {"patch": patch}

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        patch = self.state["patch"].to(images.device, images.dtype)
        n, _, h, w = images.shape
        s = self.config.patch_size
        if s > min(h, w):
            raise ValueError(f"patch_size {s} exceeds the image size {h}x{w}")
        out = images.clone()
        if self.config.location == "bottom_right":
            out[:, :, h - s:, w - s:] = patch
            return out
        g = ctx.generator(f"badnet:location:{'train' if train else 'test'}")
        ys = torch.randint(0, h - s + 1, (n,), generator=g).tolist()
        xs = torch.randint(0, w - s + 1, (n,), generator=g).tolist()
        for i, (y, x) in enumerate(zip(ys, xs)):
            out[i, :, y:y + s, x:x + s] = patch
        return out
