"""Decomp evasion: a poisoned fine-tune that keeps the trigger out of the heads Decomp-Rep / Decomp-Det watch.

Decomp-Rep repairs, and Decomp-Det counts, last-layer attention heads whose direct contribution on an input
falls below a cosine similarity ε to the head's clean prototype. An attacker who controls the fine-tune code
(a poisoned training recipe, a malicious fine-tuning service) adds a penalty to the loss on each batch:

    weight * mean over the batch's poisoned images of  sum over heads  relu(tau_h - cos(c_h(x), p_h))

where c_h(x) is head h's last-layer contribution on the triggered image, p_h the mean contribution over the
batch's clean images (the model's current prototype, no gradient) and tau_h the ``tau_quantile`` of the clean
images' own similarities to p_h — well above Decomp's calibrated ε (a low quantile, 5% by default). The
backdoor then has to live in contributions that look clean per head (spread over heads, layers and MLPs).
The trigger is BadNet's; ``penalty_weight`` is swept.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from bench_core import PoisonResult, RunContext, ThreatModel, AdaptiveAttack
from bench_core.decomposition import decompose, decompose_differentiable

from bdbench_attacks.badnet import BadNet, BadNetConfig

DECOMP_FAMILIES = frozenset({"decomp_rep", "decomp_det", "base_decomp", "decomp_reverse"})


class DecompEvasionConfig(BadNetConfig):
    penalty_weight: float = Field(1.0, ge=0)  # swept in the adaptive suite
    tau_quantile: float = Field(0.25, gt=0, lt=1)  # per-head target similarity: this quantile of clean images'
    max_clean: int = Field(64, ge=2)  # clean images of the batch that make the prototypes


class DecompEvasion(AdaptiveAttack, BadNet):
    name = "decomp_evasion"
    version = "0.1.0"
    Config = DecompEvasionConfig
    plain = "badnet"
    defeats = "fine-tune penalty keeping triggered images' last-layer heads near the clean prototypes"
    summary = "BadNet whose poisoned fine-tune penalises last-layer head contributions far from clean prototypes"
    known_fields: ClassVar[frozenset[str]] = frozenset({"epsilon_quantile"})
    threat_model = ThreatModel(
        data="poisons a fraction of the fine-tune pairs and adds a loss term to the fine-tune (controls training)",
        knowledge="the decomposition defense's algorithm (last-layer heads vs clean prototypes)",
        reads=frozenset({"finetune_pairs"}))

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return cls.family(name) in DECOMP_FAMILIES

    def finetune_loss(self, poisoned: PoisonResult, ctx: RunContext):
        if self.config.penalty_weight == 0:
            return None
        is_poisoned = torch.zeros(len(poisoned.pairs), dtype=torch.bool)
        is_poisoned[poisoned.poisoned] = True
        return HeadPrototypePenalty(is_poisoned, self.config)


class HeadPrototypePenalty:
    """The ``extra_loss`` of :class:`DecompEvasion` (see the module docstring); ``last`` keeps the last value."""

    def __init__(self, is_poisoned: torch.Tensor, config: DecompEvasionConfig):
        self.is_poisoned, self.config = is_poisoned, config
        self.last = float("nan")

    def __call__(self, model, images: torch.Tensor, tokens: torch.Tensor, image_features: torch.Tensor,
                 text_features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        in_range = rows < len(self.is_poisoned)  # rows past the poisoned set: a train-stage defense's own pairs
        flags = torch.zeros(len(rows), dtype=torch.bool)
        flags[in_range] = self.is_poisoned[rows[in_range]]
        flags = flags.to(images.device)
        if not bool(flags.any()) or int((~flags).sum()) < 2:
            return image_features.new_zeros(())
        clean = images[~flags][:self.config.max_clean]
        with torch.no_grad():
            clean_heads = decompose(model, clean).heads[:, -1]  # (C, H, D)
            proto = clean_heads.mean(0)
            tau = torch.quantile(F.cosine_similarity(clean_heads, proto, dim=-1).float(), self.config.tau_quantile,
                                 dim=0)
        heads = decompose_differentiable(model, images[flags]).heads[:, -1]  # (P, H, D), with gradient
        sim = F.cosine_similarity(heads, proto, dim=-1)
        penalty = F.relu(tau.to(sim.dtype) - sim).sum(-1).mean()
        self.last = float(penalty.detach())
        return self.config.penalty_weight * penalty
