"""Blended (Chen et al., 2017): x' = (1 - alpha) x + alpha * pattern, with one fixed seeded pattern."""

from __future__ import annotations

import torch
from pydantic import Field

from bench_core import Attack, AttackConfig, RunContext


class BlendedConfig(AttackConfig):
    alpha: float = Field(0.2, gt=0, lt=1)  # paper appendix D.1: blend ratio 0.2


class Blended(Attack):
    """Blend every poisoned or test image with the same uniform-noise pattern, drawn once per seed."""

    name = "blended"
    version = "0.1.0"
    Config = BlendedConfig
    locality = "global"
    summary = "whole-image noise pattern blended at ratio 0.2 (Chen et al., 2017)"
    presets = {
        # paper appendix D.1: blend ratio 0.2 (also the default), 1,500 of 500K CC3M pairs poisoned
        "paper": {"alpha": 0.2, "poison_rate": 0.003},
    }

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        pairs = ctx.require("finetune_pairs")
        _, c, h, w = pairs.images.shape
        return {"pattern": torch.rand(c, h, w, generator=ctx.generator("blended:pattern"))}

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        pattern = self.state["pattern"].to(images.device, images.dtype)
        if pattern.shape != images.shape[1:]:
            raise ValueError(f"blend pattern {tuple(pattern.shape)} does not match images {tuple(images.shape[1:])}")
        a = self.config.alpha
        return ((1 - a) * images + a * pattern).clamp(0, 1)
