"""Clean-reference contamination: triggered samples slipped into the data a defense trusts as clean.

Decomp-Rep / Decomp-Det fit their head prototypes and thresholds on the clean reference, STRIP blends with
it, PDB's oracle variant draws its reserve from held-out pairs and CleanCLIP fine-tunes on them. An attacker
who can place a few samples wherever the defender gathers "clean" data (a scraped validation set, a vendor's
hold-out) makes the defense learn the trigger as normal. This attack poisons the fine-tune exactly as BadNet
does (same patch, same rate) and replaces ``contamination_rate`` of the defender's clean reference images
with triggered copies, and the same share of its held-out pairs with triggered images captioned as the
target (a poisoned pair among the clean ones).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from bench_core import AdaptiveAttack, OverlayImages, PairSet, RunContext, ThreatModel

from bdbench_attacks.badnet import BadNet, BadNetConfig

CONTAMINABLE = frozenset({"clean_reference", "heldout"})


class ReferenceContaminationConfig(BadNetConfig):
    contamination_rate: float = Field(0.05, ge=0, le=1)  # issue [7]: swept over 0, 1, 5 and 10%


class ReferenceContamination(AdaptiveAttack, BadNet):
    name = "reference_contamination"
    version = "0.1.0"
    Config = ReferenceContaminationConfig
    plain = "badnet"
    defeats = "triggered samples in the defender's clean reference / held-out pairs"
    summary = "BadNet plus triggered samples slipped into the defender's trusted clean data"
    contaminates: ClassVar[frozenset[str]] = CONTAMINABLE
    threat_model = ThreatModel(
        data="poisons a fraction of the fine-tune pairs and a fraction of the defender's clean reference / "
             "held-out pairs",
        knowledge="which data the defense trusts as clean (not the defense's config)",
        reads=frozenset({"finetune_pairs"}))
    known_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return bool(reads & CONTAMINABLE)

    def n_contaminated(self, n: int) -> int:
        return round(self.config.contamination_rate * n)

    def contaminate(self, field_name: str, value: Any, ctx: RunContext) -> Any:
        k = self.n_contaminated(len(value))
        if k == 0 or field_name not in CONTAMINABLE:
            return value
        rows = torch.randperm(len(value), generator=ctx.generator(f"{self.name}:{field_name}"))[:k].sort().values
        if field_name == "clean_reference":
            triggered = self.apply_trigger(value[rows], ctx, train=True)
            if isinstance(value, torch.Tensor):
                out = value.clone()
                out[rows] = triggered.to(out.dtype)
                return out
            return OverlayImages(value, rows, triggered)  # a lazy reference stays lazy
        pairs: PairSet = value
        rng = ctx.rng(f"{self.name}:{field_name}:captions")
        captions = list(pairs.captions)
        for r in rows.tolist():
            captions[r] = ctx.write_caption(self.target_class, pairs.attrs[r] if pairs.attrs else None, rng)
        images = OverlayImages(pairs.images, rows, self.apply_trigger(pairs.images[rows], ctx, train=True))
        return PairSet(images, tuple(captions), pairs.labels, pairs.attrs)
