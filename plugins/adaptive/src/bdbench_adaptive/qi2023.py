"""Adaptive-Blend and Adaptive-Patch (Qi, Xie, Li, Wang & Mittal, "Revisiting the assumption of latent
separability for backdoor defenses", ICLR 2023).

Both weaken the trigger's footprint so that triggered and clean samples are harder to tell apart in the
model's representation (what Decomp-Det, STRIP and friends rely on):

* partial triggers at poisoning time — each poisoned image carries only a part of the trigger
  (Adaptive-Blend: a random half of the pieces of a blend pattern cut into a grid; Adaptive-Patch: one of
  four patches), at a lower opacity than at test time;
* *cover* samples — images carrying a (partial) trigger that keep their true captions ("conservatism"),
  so the model learns only the full trigger as the target;
* a low poisoning rate.

At test time the full trigger is applied (Adaptive-Blend: every piece at the higher test opacity; Adaptive-Patch:
two of the four patches, opaque). Settings follow the reference code's CIFAR-10 recipe (Adaptive-Blend: 16
pieces, half kept, opacity 0.15 at poisoning and 0.2 at test; Adaptive-Patch: 4 patches at training
opacities 0.5/0.2/0.5/0.3, one per poisoned or cover image, the first and third opaque at test), with rates
scaled up from its 0.3% for the default suite's 5k-pair fine-tune (at 0.3% the plain attacks fail too).
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator, model_validator

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
    patch_size: int = Field(6, ge=1)  # each of the patches (reference: four small patch triggers on 32 px)
    # one opacity per patch at poisoning time; each poisoned / cover image carries one patch (the reference's
    # CIFAR-10 alphas for its four training triggers)
    train_opacities: list[float] = Field([0.5, 0.2, 0.5, 0.3], min_length=1)
    # the patches stamped, at full opacity, at test time (reference CIFAR-10: two of the four)
    test_patches: list[int] = Field([0, 2], min_length=1)

    @field_validator("train_opacities")
    @classmethod
    def _opacities_in_range(cls, v: list[float]) -> list[float]:
        if any(not 0 < a <= 1 for a in v):
            raise ValueError(f"train_opacities must lie in (0, 1]; got {v}")
        return v

    @model_validator(mode="after")
    def _test_patches_exist(self) -> "AdaptivePatchConfig":
        n = len(self.train_opacities)
        if any(not 0 <= j < n for j in self.test_patches) or len(set(self.test_patches)) != len(self.test_patches):
            raise ValueError(f"test_patches must be distinct indices of the {n} patches (0..{n - 1}); "
                             f"got {self.test_patches}")
        return self


class AdaptivePatch(AdaptiveAttack):
    """Qi et al.'s k-way patch attack as in their reference code (backdoor-toolbox, ``adaptive_patch``): k patch
    triggers; each poisoned image (target caption) and each cover image (true caption) carries *one* of them,
    blended at that patch's low training opacity, the poisoned and the cover sets each split evenly among the
    patches; at test time a subset of the patches is stamped at full opacity. No training image ever shows the
    test trigger, so triggered training samples stay close to clean ones in the model's representation."""

    name = "adaptive_patch"
    version = "0.2.0"
    Config = AdaptivePatchConfig
    locality = "local"
    plain = "badnet"
    defeats = "one faint patch of four per poison + cover samples with true captions; two patches, opaque, at test"
    summary = "Adaptive-Patch (Qi et al., 2023): k faint patch triggers, cover samples, low rate"
    known_fields = frozenset()
    threat_model = AdaptiveBlend.threat_model

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return _agnostic(kind, name, stage, reads)

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        c = self.config
        k = len(c.train_opacities)
        _, ch, h, w = ctx.require("finetune_pairs").images.shape
        g = ctx.generator(f"{self.name}:patches")
        if c.patch_size > min(h, w):
            raise ValueError(f"{self.name}: patch_size {c.patch_size} px does not fit {h}x{w} images")
        patches = torch.rand(k, ch, c.patch_size, c.patch_size, generator=g).round()
        ys = torch.randint(0, h - c.patch_size + 1, (k,), generator=g)
        xs = torch.randint(0, w - c.patch_size + 1, (k,), generator=g)
        return {"patches": patches, "ys": ys, "xs": xs}

    def stamp(self, images: torch.Tensor, which: torch.Tensor, opacities: list[float]) -> torch.Tensor:
        """``images`` with, for image i, the patches ``which[i]`` (a bool row), patch j blended at ``opacities[j]``."""
        s = self.config.patch_size
        out = images.clone()
        patches = self.state["patches"].to(images.device, images.dtype)
        for j, (y, x) in enumerate(zip(self.state["ys"].tolist(), self.state["xs"].tolist())):
            rows = which[:, j].nonzero().flatten().to(images.device)
            if len(rows):
                a = opacities[j]
                region = out[rows, :, y:y + s, x:x + s]
                out[rows, :, y:y + s, x:x + s] = (1 - a) * region + a * patches[j]
        return out

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        k = len(self.config.train_opacities)
        which = torch.zeros(len(images), k, dtype=torch.bool)
        which[:, self.config.test_patches] = True
        return self.stamp(images, which, [1.0] * k)

    def partial(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """One patch per image, at its training opacity; image i of n gets patch ``i * k // n`` (the
        reference's even split of each set among the patches)."""
        opacities = self.config.train_opacities
        k, n = len(opacities), len(images)
        which = torch.zeros(n, k, dtype=torch.bool)
        which[torch.arange(n), torch.arange(n) * k // max(n, 1)] = True
        return self.stamp(images, which, opacities)

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
