"""Adaptive-Blend and Adaptive-Patch (Qi, Xie, Li, Wang & Mittal, "Revisiting the assumption of latent
separability for backdoor defenses", ICLR 2023).

Both weaken the trigger's footprint so that triggered and clean samples are harder to tell apart in the
model's representation (what Decomp-Det, STRIP and friends rely on):

* partial triggers at poisoning time — each poisoned image carries only a random part of the trigger
  (Adaptive-Blend: half of the pieces of a blend pattern cut into a grid; Adaptive-Patch: two of four
  patches), at a lower opacity than at test time;
* *cover* samples — images carrying a (partial) trigger that keep their true captions ("conservatism"),
  so the model learns only the full trigger as the target;
* a low poisoning rate.

At test time the full trigger is applied (Adaptive-Blend at the higher test opacity). Settings follow the
paper's CIFAR-10 recipe (16 pieces, half kept; 4 patches, 2 kept; train/test opacity 0.15/0.2), with rates
scaled up from its 0.3% for the default suite's 5k-pair fine-tune (at 0.3% the plain attacks fail too).
"""

from __future__ import annotations

import torch
from pydantic import Field

from bench_core import AdaptiveAttack, AttackConfig, PairSet, PoisonResult, RunContext, ThreatModel

from bdbench_adaptive.poisoning import KEEP_CAPTION, Group, assemble, blend, disjoint_draw, non_target_rows, noise_pattern

AGNOSTIC = "defense-agnostic: knows no defense config"


def _agnostic(kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
    return kind == "detector" or stage in ("train", "post_train", "inference")


class AdaptiveBlendConfig(AttackConfig):
    poison_rate: float = Field(0.03, gt=0, le=1)  # low rate (Qi et al.: 0.3% of CIFAR-10; scaled, see module)
    cover_rate: float = Field(0.03, ge=0, le=1)  # Qi et al.: cover rate equal to the poison rate
    grid: int = Field(4, ge=1)  # the pattern is cut into grid x grid pieces (paper: 16 pieces)
    keep: float = Field(0.5, gt=0, le=1)  # share of pieces each poisoned / cover image carries (paper: half)
    alpha_train: float = Field(0.15, gt=0, lt=1)  # paper: 0.15 at poisoning
    alpha_test: float = Field(0.2, gt=0, lt=1)  # paper: 0.2 at test time


class AdaptiveBlend(AdaptiveAttack):
    name = "adaptive_blend"
    version = "0.1.0"
    Config = AdaptiveBlendConfig
    locality = "global"
    plain = "blended"
    defeats = "partial blend triggers + cover samples with true captions: weak latent separability"
    summary = "Adaptive-Blend (Qi et al., 2023): partial blend pieces, cover samples, low rate"
    known_fields = frozenset()
    threat_model = ThreatModel(data="poisons a fraction of the fine-tune pairs (plus cover pairs, captions kept)",
                               knowledge=AGNOSTIC, reads=frozenset({"finetune_pairs"}))

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return _agnostic(kind, name, stage, reads)

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        _, c, h, w = ctx.require("finetune_pairs").images.shape
        return {"pattern": noise_pattern((c, h, w), ctx.generator(f"{self.name}:pattern"))}

    def piece_masks(self, n: int, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        """(n, H, W) masks, each the union of a random ``keep`` share of the grid's pieces."""
        k, (h, w) = self.config.grid, size
        n_keep = max(1, round(self.config.keep * k * k))
        chosen = torch.stack([torch.randperm(k * k, generator=g)[:n_keep] for _ in range(n)])
        cells = torch.zeros(n, k * k)
        cells.scatter_(1, chosen, 1.0)
        ys = (torch.arange(h) * k // h)
        xs = (torch.arange(w) * k // w)
        return cells.view(n, k, k)[:, ys][:, :, xs]

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        return blend(images, self.state["pattern"], self.config.alpha_test)

    def partial(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        masks = self.piece_masks(len(images), images.shape[-2:], g)[:, None]
        return blend(images, self.state["pattern"], self.config.alpha_train * masks)

    def poison(self, pairs: PairSet, ctx: RunContext) -> PoisonResult:
        return _poison_with_cover(self, pairs, ctx, self.partial)


class AdaptivePatchConfig(AttackConfig):
    poison_rate: float = Field(0.03, gt=0, le=1)  # low rate (see AdaptiveBlendConfig)
    cover_rate: float = Field(0.03, ge=0, le=1)
    patch_size: int = Field(6, ge=1)  # each of the patches (paper: 4 small patches on 32 px)
    n_patches: int = Field(4, ge=1)  # paper: 4 patches
    keep: int = Field(2, ge=1)  # patches each poisoned / cover image carries (paper: 2)
    opacity_train: float = Field(1.0, gt=0, le=1)  # paper: patches blended with some transparency when training


class AdaptivePatch(AdaptiveAttack):
    name = "adaptive_patch"
    version = "0.1.0"
    Config = AdaptivePatchConfig
    locality = "local"
    plain = "badnet"
    defeats = "two of four patches per poison + cover samples with true captions: weak latent separability"
    summary = "Adaptive-Patch (Qi et al., 2023): subsets of several patches, cover samples, low rate"
    known_fields = frozenset()
    threat_model = AdaptiveBlend.threat_model

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return _agnostic(kind, name, stage, reads)

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        c = self.config
        _, ch, h, w = ctx.require("finetune_pairs").images.shape
        g = ctx.generator(f"{self.name}:patches")
        if c.keep > c.n_patches or c.patch_size > min(h, w):
            raise ValueError(f"{self.name}: keep {c.keep} of {c.n_patches} patches of {c.patch_size} px on {h}x{w}")
        patches = torch.rand(c.n_patches, ch, c.patch_size, c.patch_size, generator=g).round()
        ys = torch.randint(0, h - c.patch_size + 1, (c.n_patches,), generator=g)
        xs = torch.randint(0, w - c.patch_size + 1, (c.n_patches,), generator=g)
        return {"patches": patches, "ys": ys, "xs": xs}

    def stamp(self, images: torch.Tensor, which: torch.Tensor, opacity: float) -> torch.Tensor:
        """``images`` with, for image i, the patches ``which[i]`` (a bool row) blended at ``opacity``."""
        s = self.config.patch_size
        out = images.clone()
        patches = self.state["patches"].to(images.device, images.dtype)
        for j, (y, x) in enumerate(zip(self.state["ys"].tolist(), self.state["xs"].tolist())):
            rows = which[:, j].nonzero().flatten().to(images.device)
            if len(rows):
                region = out[rows, :, y:y + s, x:x + s]
                out[rows, :, y:y + s, x:x + s] = (1 - opacity) * region + opacity * patches[j]
        return out

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        return self.stamp(images, torch.ones(len(images), self.config.n_patches, dtype=torch.bool), 1.0)

    def partial(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c = self.config
        which = torch.zeros(len(images), c.n_patches, dtype=torch.bool)
        for i in range(len(images)):
            which[i, torch.randperm(c.n_patches, generator=g)[:c.keep]] = True
        return self.stamp(images, which, c.opacity_train)

    def poison(self, pairs: PairSet, ctx: RunContext) -> PoisonResult:
        return _poison_with_cover(self, pairs, ctx, self.partial)


def _poison_with_cover(attack: AdaptiveAttack, pairs: PairSet, ctx: RunContext, partial) -> PoisonResult:
    """``poison_rate`` non-target pairs with partial triggers and target captions, plus ``cover_rate`` pairs
    with (independently drawn) partial triggers and their own captions."""
    n = attack.n_poison(len(pairs))
    n_cover = round(attack.config.cover_rate * len(pairs))
    candidates = non_target_rows(pairs, attack.target_class)
    poison_rows, cover_rows = (candidates[i] for i in disjoint_draw(len(candidates), [n, n_cover],
                                                                     ctx.generator(f"{attack.name}:select")))
    g = ctx.generator(f"{attack.name}:pieces")
    groups = [Group(poison_rows, partial(pairs.images[poison_rows], g), torch.full((n,), attack.target_class)),
              Group(cover_rows, partial(pairs.images[cover_rows], g), torch.full((n_cover,), KEEP_CAPTION))]
    return assemble(pairs, groups, ctx, attack.name)
