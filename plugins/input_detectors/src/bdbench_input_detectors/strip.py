"""STRIP (Gao et al., 2019): superimpose the input on clean images; a trigger keeps predictions confident.

score = -mean entropy of the predictions on the N blends 0.5 * x + 0.5 * x_ref (higher = more likely
triggered: a dominant trigger survives blending, so its predictions stay low-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from bench_core import Classifier, Detector, PluginConfig, Precision, RunContext, ThreatModel

from bdbench_input_detectors.inference import classifier_logits


class StripConfig(PluginConfig):
    n_blends: int = Field(64, ge=1)  # SPEC §4: N = 64 clean images per input
    alpha: float = Field(0.5, gt=0, lt=1)  # SPEC §4: blend weight 0.5
    batch_size: int = Field(2048, ge=1)
    # bdbench: the image tower's numerics; bf16 is 1.75x faster on a bf16-capable CPU (see inference.py)
    precision: Precision = "bf16"


class Strip(Detector):
    name = "strip"
    version = "0.2.0"
    Config = StripConfig
    threat_model = ThreatModel(data="clean reference: 20% of the test split, unlabelled", knowledge="none",
                               reads=frozenset({"clean_reference"}))
    summary = "entropy of predictions on inputs blended with clean images (Gao et al., 2019)"

    def fit(self, classifier: Classifier, ctx: RunContext) -> None:
        self.classifier = classifier
        reference = ctx.require("clean_reference")
        pick = torch.randperm(len(reference), generator=ctx.generator("strip:pool"))[:self.config.n_blends]
        self.pool = reference[pick]

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        a, pool = self.config.alpha, self.pool.to(images.device)
        per_chunk = max(1, self.config.batch_size // len(pool))
        scores = []
        for chunk in images.split(per_chunk):
            blends = (a * chunk[:, None] + (1 - a) * pool[None]).clamp(0, 1).flatten(0, 1)
            probs = F.softmax(classifier_logits(self.classifier, blends, self.config.precision), dim=-1)
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).view(len(chunk), len(pool))
            scores.append(-entropy.mean(dim=1).cpu())
        return torch.cat(scores) if scores else torch.empty(0)

    def forward_passes_per_image(self) -> float:
        return float(len(self.pool))
