"""Decomp-Det (paper Eq. 5): score = number of last-layer heads whose similarity to the prototype < epsilon."""

from __future__ import annotations

import torch
from pydantic import Field

from bench_core import Classifier, Detector, PluginConfig, RunContext
from bench_core.decomposition import decompose_batched

from bdbench_decomp.prototypes import Prototypes, fit_prototypes
from bdbench_decomp.repair import REFERENCE_THREAT


class DecompDetConfig(PluginConfig):
    epsilon_quantile: float = Field(0.05, gt=0, lt=1)  # per-head eps, calibrated on the clean reference
    zeta: int | None = Field(None, ge=0)  # flag if count > zeta; None: paper's 5 of 12 heads, scaled


class DecompDet(Detector):
    name = "decomp_det"
    version = "0.1.0"
    Config = DecompDetConfig
    threat_model = REFERENCE_THREAT
    summary = "count of last-layer heads far from their clean prototype"

    def fit(self, classifier: Classifier, ctx: RunContext) -> None:
        self.model = classifier.model
        self.protos: Prototypes = fit_prototypes(self.model, ctx.require("clean_reference"),
                                                 self.config.epsilon_quantile)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        return self.protos.infected_heads(decompose_batched(self.model, images)).sum(dim=1).float()

    @property
    def zeta(self) -> int:
        if self.config.zeta is not None:
            return self.config.zeta
        return round(5 * len(self.protos.head_epsilon) / 12)

    def flags(self, images: torch.Tensor) -> torch.Tensor:
        """Hard decisions of Eq. 5: more than zeta infected heads."""
        return self.score(images) > self.zeta

    def forward_passes_per_image(self) -> float:
        return 1.0
