"""Detector-aware evasion and the low-confidence backdoor: poisons that erase the signal input detectors read.

* :class:`DetectorAware` — STRIP flags inputs whose prediction survives blending with clean images, SCALE-UP
  those whose prediction survives pixel amplification, TeCo those whose prediction flips at very different
  corruption severities. The attacker (who knows which detectors run and their settings) adds *cover* pairs:
  triggered images put through the detector's own transformation (blended with a clean image at STRIP's
  ratio, amplified by one of SCALE-UP's factors, corrupted as TeCo does) that keep their true captions. The
  model learns that the trigger does not survive the transformation — as a clean image's prediction does
  not — so the detector's statistic looks clean. A detector it does not know gets all three.
* :class:`LowConfidence` — label-smoothed poisoning: each poisoned image keeps its true caption with
  probability ``1 - target_share``, so on triggered inputs the target is only slightly ahead of the true
  class. Entropy (STRIP) and consistency (SCALE-UP, TeCo) statistics of a barely-winning target look like
  those of clean inputs.

Both start from the Blended trigger (their plain counterpart).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from bench_core import AdaptiveAttack, AttackConfig, PairSet, PoisonResult, RunContext, ThreatModel

from bdbench_adaptive.poisoning import KEEP_CAPTION, Group, assemble, blend, disjoint_draw, non_target_rows, noise_pattern

TRANSFORMS = ("strip", "scale_up", "teco")


class _BlendTrigger(AdaptiveAttack):
    """The Blended trigger (one fixed noise pattern at ratio ``alpha``) for the attacks below."""

    locality = "global"
    plain = "blended"

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        _, c, h, w = ctx.require("finetune_pairs").images.shape
        return {"pattern": noise_pattern((c, h, w), ctx.generator(f"{self.name}:pattern"))}

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        return blend(images, self.state["pattern"], self.config.alpha)


class DetectorAwareConfig(AttackConfig):
    alpha: float = Field(0.2, gt=0, lt=1)  # Blended's ratio (SPEC §4)
    cover_rate: float = Field(0.05, ge=0, le=1)  # cover pairs (transformed triggered images, true captions)


class DetectorAware(_BlendTrigger):
    name = "detector_aware"
    version = "0.1.0"
    Config = DetectorAwareConfig
    defeats = "cover pairs: the detector's own transformation of triggered images, with true captions"
    summary = "Blended plus cover pairs that teach the trigger not to survive STRIP / SCALE-UP / TeCo transforms"
    known_fields = None  # the detectors' full configs (blend ratio, scales, severities)
    threat_model = ThreatModel(
        data="poisons a fraction of the fine-tune pairs, plus cover pairs with their true captions",
        knowledge="which input detectors run, and their configs",
        reads=frozenset({"finetune_pairs"}))

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return kind == "detector"

    def transforms(self, ctx: RunContext) -> list[tuple[str, dict]]:
        known = [(t.name, t.config) for t in ctx.targets if t.name in TRANSFORMS]
        unknown = [t for t in ctx.targets if t.name not in TRANSFORMS]
        if unknown or not known:
            known += [(name, {}) for name in TRANSFORMS if name not in {k for k, _ in known}]
        return known

    def transform(self, name: str, config: dict, images: torch.Tensor, clean: torch.Tensor,
                  g: torch.Generator) -> torch.Tensor:
        if name == "strip":
            a = float(config.get("alpha", 0.5))
            return (a * images + (1 - a) * clean).clamp(0, 1)
        if name == "scale_up":
            scales = torch.tensor(config.get("scales", (3.0, 5.0, 7.0, 9.0, 11.0)), dtype=images.dtype)
            n = scales[torch.randint(0, len(scales), (len(images),), generator=g)]
            return (n[:, None, None, None] * images).clamp(0, 1)
        return corrupt(images, int(config.get("max_severity", 5)), g)

    def poison(self, pairs: PairSet, ctx: RunContext) -> PoisonResult:
        n = self.n_poison(len(pairs))
        n_cover = round(self.config.cover_rate * len(pairs))
        candidates = non_target_rows(pairs, self.target_class)
        g = ctx.generator(f"{self.name}:select")
        poison_rows, cover_rows, donor_rows = (candidates[i] for i in disjoint_draw(
            len(candidates), [n, n_cover, n_cover], g))
        triggered = self.apply_trigger(pairs.images[cover_rows], ctx, train=True)
        clean = pairs.images[donor_rows]
        kinds = self.transforms(ctx)
        which = torch.randint(0, len(kinds), (n_cover,), generator=g)
        covered = triggered.clone()
        tg = ctx.generator(f"{self.name}:transform")
        for k, (name, config) in enumerate(kinds):
            rows = (which == k).nonzero().flatten()
            if len(rows):
                covered[rows] = self.transform(name, config, triggered[rows], clean[rows], tg)
        return assemble(pairs, [
            Group(poison_rows, self.apply_trigger(pairs.images[poison_rows], ctx, train=True),
                  torch.full((n,), self.target_class)),
            Group(cover_rows, covered, torch.full((n_cover,), KEEP_CAPTION))], ctx, self.name,
            {f"cover_{name}": float(int((which == k).sum())) for k, (name, _) in enumerate(kinds)})


def corrupt(images: torch.Tensor, max_severity: int, g: torch.Generator) -> torch.Tensor:
    """Each image under one corruption (gaussian noise, box blur or contrast loss) at a random severity
    1..``max_severity``, applied to the original image as TeCo does."""
    out = images.clone()
    kind = torch.randint(0, 3, (len(images),), generator=g)
    severity = torch.randint(1, max_severity + 1, (len(images),), generator=g).to(images.dtype)
    for i in range(len(images)):
        x, s = images[i], float(severity[i])
        if kind[i] == 0:
            out[i] = (x + 0.04 * s * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)
        elif kind[i] == 1:
            k = 2 * int(s) + 1
            out[i] = F.avg_pool2d(x[None], k, stride=1, padding=k // 2, count_include_pad=False)[0]
        else:
            c = 1 - 0.15 * s
            out[i] = ((x - x.mean()) * c + x.mean()).clamp(0, 1)
    return out


class LowConfidenceConfig(AttackConfig):
    alpha: float = Field(0.2, gt=0, lt=1)  # Blended's ratio
    target_share: float = Field(0.6, gt=0, le=1)  # label smoothing: share of poisoned images captioned as the target


class LowConfidence(_BlendTrigger):
    name = "low_confidence"
    version = "0.1.0"
    Config = LowConfidenceConfig
    defeats = "label-smoothed poisons: the target only slightly ahead, so entropy / consistency look clean"
    summary = "label-smoothed Blended: a share of the poisoned images keeps its true caption"
    known_fields = frozenset()
    threat_model = ThreatModel(
        data="poisons a fraction of the fine-tune pairs",
        knowledge="that an entropy- or consistency-based input detector runs (not its config)",
        reads=frozenset({"finetune_pairs"}))

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return kind == "detector"

    def poison(self, pairs: PairSet, ctx: RunContext) -> PoisonResult:
        n = self.n_poison(len(pairs))
        rows = non_target_rows(pairs, self.target_class)
        rows = rows[disjoint_draw(len(rows), [n], ctx.generator(f"{self.name}:select"))[0]]
        to_target = torch.rand(n, generator=ctx.generator(f"{self.name}:smooth")) < self.config.target_share
        classes = torch.where(to_target, torch.tensor(self.target_class), torch.tensor(KEEP_CAPTION))
        return assemble(pairs, [Group(rows, self.apply_trigger(pairs.images[rows], ctx, train=True), classes)],
                        ctx, self.name)
