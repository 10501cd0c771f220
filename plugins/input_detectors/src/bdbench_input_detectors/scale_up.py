"""SCALE-UP (Guo et al., ICLR 2023): amplified triggered images keep their prediction; clean ones drift.

For each scale n the input is amplified in pixel space, clamp(n * x, 0, 1); score = fraction of the amplified
images whose predicted label equals the prediction on x itself (the paper's scaled prediction consistency, its
data-free variant; higher = more likely triggered).
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from bench_core import Classifier, Detector, PluginConfig, Precision, RunContext, ThreatModel

from bdbench_input_detectors.inference import classifier_logits


class ScaleUpConfig(PluginConfig):
    scales: tuple[float, ...] = (3.0, 5.0, 7.0, 9.0, 11.0)  # Guo et al. 2023 (and SPEC §4): n in {3,5,7,9,11}
    batch_size: int = Field(2048, ge=1)  # images per classifier call (bdbench: bounds memory, as STRIP's)
    # bdbench: the image tower's numerics; bf16 is 1.75x faster on a bf16-capable CPU (see inference.py)
    precision: Precision = "bf16"

    @field_validator("scales")
    @classmethod
    def _positive(cls, scales: tuple[float, ...]) -> tuple[float, ...]:
        if not scales or any(n <= 0 for n in scales):
            raise ValueError("scales must be a non-empty list of positive amplification factors")
        return scales


class ScaleUp(Detector):
    name = "scale_up"
    version = "0.2.0"
    Config = ScaleUpConfig
    threat_model = ThreatModel(data="none: only the input being scored", knowledge="none", reads=frozenset())
    summary = "consistency of predictions on pixel-amplified inputs (Guo et al., 2023)"

    def fit(self, classifier: Classifier, ctx: RunContext) -> None:
        self.classifier = classifier

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        scales = self.config.scales
        if len(images) == 0:
            return torch.empty(0)
        per_chunk = max(1, self.config.batch_size // (1 + len(scales)))
        scores = []
        for chunk in images.split(per_chunk):
            # (1 + S) stacked versions of the chunk: the original first, then each amplification.
            versions = torch.stack([chunk] + [(n * chunk).clamp(0, 1) for n in scales])
            logits = classifier_logits(self.classifier, versions.flatten(0, 1), self.config.precision)
            preds = logits.argmax(dim=-1).view(len(versions), len(chunk))
            scores.append((preds[1:] == preds[0]).float().mean(dim=0).cpu())
        return torch.cat(scores)

    def forward_passes_per_image(self) -> float:
        return float(1 + len(self.config.scales))
