"""BadNet (Gu et al., 2017) on CLIP: a fixed patch stamped at a random location; captions name the target."""

from __future__ import annotations

from typing import Literal

import torch

from bench_core import Attack, RunContext

from bdbench_attacks.patches import PatchConfig, stamp


class BadNetConfig(PatchConfig):
    # default suite: a black/white checkerboard. Measured on the default world (5% poisoned, 10 epochs, lr 1e-3):
    # 8 px checkerboard 99.2% ASR vs 8 px binary noise patch 84.7%. The paper's noise patch is the "paper" preset.
    pattern: Literal["noise", "checkerboard"] = "checkerboard"


class BadNet(Attack):
    """Stamp one fixed patch (drawn once per seed in ``prepare``, never redrawn) at a per-image location.

    Subclasses (Label-Consistent) reuse the patch and the stamping; every random draw is salted with the
    attack's own ``name``, so two attacks never share a noise patch or locations by accident (the default
    checkerboard is deterministic, hence the same for both).
    """

    name = "badnet"
    version = "0.1.0"
    Config = BadNetConfig
    locality = "local"
    summary = "patch trigger at a random location (Gu et al., 2017)"
    presets = {
        # paper appendix D.1: 16 px patch on 224 px, 1,500 of 500K CC3M pairs poisoned
        "paper": {"patch_size": 16, "poison_rate": 0.003, "pattern": "noise"},
        # the quick suite's 16 px miniature world
        "quick": {"patch_size": 4},
    }

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        s = self.config.patch_size
        if self.config.pattern == "checkerboard":
            yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
            patch = ((yy + xx) % 2).float().expand(3, s, s).clone()
        else:
            patch = torch.rand(3, s, s, generator=ctx.generator(f"{self.name}:patch")).round()
        return {"patch": patch}

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        g = ctx.generator(f"{self.name}:location:{'train' if train else 'test'}")
        return stamp(images, self.state["patch"], self.config.location, g)
