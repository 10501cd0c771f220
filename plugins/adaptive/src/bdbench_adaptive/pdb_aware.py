"""Stress tests of PDB (Wei et al., 2024): an attacker who knows PDB's public algorithm.

* :class:`PdbHAware` — PDB answers a triggered input with h⁻¹ of what the model says under Δ1. An attacker
  who knows h (published as part of the method; here the ``shift``) but not Δ1 poisons two ways: its trigger
  alone -> captions of the target t (the undefended backdoor), and its trigger plus a *guess* at Δ1 ->
  captions of h(t), so that under PDB the model says h(t) and h⁻¹ maps it back to t. Δ1's size, value and
  pattern are secret; the attacker averages over guesses (a small patch in a random corner, random size and
  value), and its own trigger is a global blend kept out of the corners where Δ1 could sit. With a plain
  attack PDB's prediction is hijacked to h⁻¹(t) instead of the true class: the report shows RA beside ASR.
* :class:`PdbCollision` — an availability attack: poisons carry an imitation of Δ1 (PDB's published corner
  patch, size and pattern known, value clipped to [0, 1]) with target captions. PDB stamps Δ1 on every
  input, so if the imitation collides with it, every input goes to the target (or to h⁻¹ of it): clean
  accuracy under PDB falls. Compared with no attack under PDB; the report shows CACC.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from bench_core import AdaptiveAttack, AttackConfig, PairSet, PoisonResult, RunContext, TargetInfo, ThreatModel

from bdbench_adaptive.poisoning import KEEP_CAPTION, Group, assemble, blend, disjoint_draw, non_target_rows, noise_pattern


def _pdb_target(ctx: RunContext) -> TargetInfo:
    for t in ctx.targets:
        if AdaptiveAttack.family(t.name) == "pdb":
            return t
    raise ValueError(f"this attack targets PDB, but its targets are {[t.label for t in ctx.targets]}")


class PdbHAwareConfig(AttackConfig):
    alpha: float = Field(0.2, gt=0, lt=1)  # blend ratio of the global trigger (Blended's, SPEC §4)
    corner_margin: float = Field(0.25, ge=0, lt=0.5)  # fraction of each side kept trigger-free at every corner
    h_share: float = Field(0.5, gt=0, lt=1)  # share of poisons stamped with a Δ1 guess and captioned h(t)
    guess_sizes: tuple[int, int] = (2, 6)  # the Δ1 guesses' side, drawn uniformly in this range (pixels)


class PdbHAware(AdaptiveAttack):
    name = "pdb_h_aware"
    version = "0.1.0"
    Config = PdbHAwareConfig
    locality = "global"
    plain = "blended"
    defeats = "trigger -> t, trigger + Δ1 guess -> h(t): PDB's h⁻¹ maps the hijacked prediction back to t"
    summary = "knows PDB's h, guesses Δ1: poisons trigger -> t and trigger + Δ1 guess -> h(t)"
    known_fields: ClassVar[frozenset[str]] = frozenset({"shift"})
    threat_model = ThreatModel(
        data="poisons a fraction of the fine-tune pairs",
        knowledge="PDB's algorithm and its label map h (shift), not Δ1 (size, value, pattern, corner)",
        reads=frozenset({"finetune_pairs"}))

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return kind == "defense" and cls.family(name) == "pdb"

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        _, c, h, w = ctx.require("finetune_pairs").images.shape
        pattern = noise_pattern((c, h, w), ctx.generator(f"{self.name}:pattern"))
        mask = torch.ones(h, w)
        mh, mw = round(self.config.corner_margin * h), round(self.config.corner_margin * w)
        for ys in (slice(0, mh), slice(h - mh, h)):
            for xs in (slice(0, mw), slice(w - mw, w)):
                mask[ys, xs] = 0
        return {"pattern": pattern, "alpha_map": self.config.alpha * mask}

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        return blend(images, self.state["pattern"], self.state["alpha_map"])

    def guess_delta(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Each image stamped with a random guess at Δ1: a solid square of random side and value in a random
        corner."""
        out = images.clone()
        lo, hi = self.config.guess_sizes
        h, w = images.shape[-2:]
        for i in range(len(out)):
            s = int(torch.randint(lo, hi + 1, (1,), generator=g))
            value = float(torch.rand(1, generator=g).round())
            corner = int(torch.randint(0, 4, (1,), generator=g))
            y, x = (0 if corner < 2 else h - s), (0 if corner % 2 == 0 else w - s)
            out[i, :, y:y + s, x:x + s] = value
        return out

    def h_of_target(self, ctx: RunContext) -> int:
        """h(t) = (t + shift) mod K, with PDB's public shift."""
        return (self.target_class + int(_pdb_target(ctx).config["shift"])) % len(ctx.classnames)

    def caption_classes(self, ctx: RunContext) -> frozenset[int]:
        return frozenset({self.target_class, self.h_of_target(ctx)})

    def poison(self, pairs: PairSet, ctx: RunContext) -> PoisonResult:
        t, h_t = self.target_class, self.h_of_target(ctx)
        n = self.n_poison(len(pairs))
        n_h = round(self.config.h_share * n)
        g = ctx.generator(f"{self.name}:select")
        candidates = non_target_rows(pairs, t)
        plain_rows, h_rows = (candidates[i] for i in disjoint_draw(len(candidates), [n - n_h, n_h], g))
        images = self.apply_trigger(pairs.images[plain_rows], ctx, train=True)
        guessed = self.guess_delta(self.apply_trigger(pairs.images[h_rows], ctx, train=True),
                                   ctx.generator(f"{self.name}:delta_guess"))
        return assemble(pairs, [Group(plain_rows, images, torch.full((len(plain_rows),), t)),
                                Group(h_rows, guessed, torch.full((len(h_rows),), h_t))], ctx, self.name,
                        {"h_of_target": float(h_t)})


class PdbCollisionConfig(AttackConfig):
    imitation_value: float = Field(1.0, ge=0, le=1)  # Δ1's value clipped into [0, 1] (the reference's 2.0 is not an image)


class PdbCollision(AdaptiveAttack):
    name = "pdb_collision"
    version = "0.1.0"
    Config = PdbCollisionConfig
    locality = "local"
    plain = "none"
    defeats = "poisons imitate Δ1 with target captions: PDB's always-on Δ1 then fires the attacker's backdoor"
    summary = "availability attack: an imitation of PDB's Δ1 (corner patch) poisoned toward the target"
    known_fields: ClassVar[frozenset[str]] = frozenset({"patch_size", "pattern"})
    threat_model = ThreatModel(
        data="poisons a fraction of the fine-tune pairs",
        knowledge="PDB's published Δ1 form: a top-left patch of known size and pattern, not its value",
        reads=frozenset({"finetune_pairs"}))

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return kind == "defense" and cls.family(name) == "pdb"

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        config = _pdb_target(ctx).config
        s, pattern = int(config["patch_size"]), config.get("pattern", "solid")
        out = images.clone()
        value = self.config.imitation_value
        if pattern == "checkerboard":
            yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
            patch = torch.where((yy + xx) % 2 == 0, value, 0.0).to(images.dtype).to(images.device)
        else:
            patch = torch.full((s, s), value, dtype=images.dtype, device=images.device)
        out[:, :, :s, :s] = patch
        return out
