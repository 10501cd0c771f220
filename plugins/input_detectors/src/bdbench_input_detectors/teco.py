"""TeCo (Liu et al., CVPR 2023): triggered images are unevenly robust across corruption types.

For each corruption type, every severity 1..S is applied to the ORIGINAL image (TeCo's reference code
re-corrupts the already corrupted images, so its severity s is really s stacked corruptions; SPEC §7), and the
first severity at which the hard label differs from the prediction on the clean input is recorded (S + 1 when
it never flips; the reference's ``--max 6`` for S = 5). score = standard deviation (population, as numpy's)
of these flip severities over corruption types (higher = more likely triggered).

Corruptions are :mod:`bdbench_input_detectors.corruptions`. Their noise comes from a generator seeded at fit
time, restarted at every :meth:`TeCo.score` call: scores are a deterministic function of the fitted seed, the
batch and ``batch_size``.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from bench_core import Classifier, Detector, PluginConfig, Precision, RunContext, ThreatModel

from bdbench_input_detectors.corruptions import CORRUPTIONS, MAX_SEVERITY
from bdbench_input_detectors.inference import classifier_logits

DEFAULT_CORRUPTIONS: tuple[str, ...] = tuple(CORRUPTIONS)


class TeCoConfig(PluginConfig):
    # SPEC §4: TeCo's corruption list (Liu et al. 2023) without defocus, glass and zoom blur
    corruptions: tuple[str, ...] = DEFAULT_CORRUPTIONS
    # Liu et al. 2023 / ImageNet-C: severities 1..5; a corruption that never flips the label counts as S + 1
    max_severity: int = Field(5, ge=1, le=MAX_SEVERITY)
    # bdbench: None draws the corruption seed from the run seed at fit time (ctx.generator("teco:corruptions"))
    seed: int | None = Field(None, ge=0)
    batch_size: int = Field(2048, ge=1)  # images per classifier call (bdbench: bounds memory, as STRIP's)
    # bdbench: the image tower's numerics; bf16 is 1.75x faster on a bf16-capable CPU (see inference.py)
    precision: Precision = "bf16"

    @field_validator("corruptions")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in CORRUPTIONS]
        if unknown:
            raise ValueError(f"unknown corruption(s) {unknown}; known: {sorted(CORRUPTIONS)}")
        if len(set(names)) != len(names) or len(names) < 2:
            raise ValueError("corruptions must be at least two distinct names (the score is a spread over them)")
        return names


class TeCo(Detector):
    name = "teco"
    version = "0.2.0"
    Config = TeCoConfig
    threat_model = ThreatModel(data="none: only the input being scored", knowledge="none", reads=frozenset())
    summary = "spread over corruption types of the severity that first flips the label (Liu et al., 2023)"

    def fit(self, classifier: Classifier, ctx: RunContext) -> None:
        self.classifier = classifier
        if self.config.seed is not None:
            self.seed = self.config.seed
        else:
            self.seed = int(torch.randint(2 ** 62, (1,), generator=ctx.generator("teco:corruptions")))

    @torch.no_grad()
    def flip_severities(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C) int64: per image and configured corruption, the first severity (1..S) whose prediction differs
        from the prediction on the uncorrupted image, or S + 1 if none does."""
        s_max, names = self.config.max_severity, self.config.corruptions
        if len(images) == 0:
            return torch.empty(0, len(names), dtype=torch.long)
        generator = torch.Generator().manual_seed(self.seed)
        per_chunk = max(1, self.config.batch_size // s_max)
        out = []
        for chunk in images.split(per_chunk):
            clean = self._predict(chunk)
            flips = []
            for name in names:
                corrupt = CORRUPTIONS[name]  # looked up per call, so tests can spy on it
                versions = torch.cat([corrupt(chunk, s, generator) for s in range(1, s_max + 1)])
                changed = (self._predict(versions).view(s_max, len(chunk)) != clean).T  # (m, S)
                first = changed.int().argmax(dim=1) + 1  # argmax returns the first maximum
                flips.append(torch.where(changed.any(dim=1), first, torch.full_like(first, s_max + 1)))
            out.append(torch.stack(flips, dim=1))
        return torch.cat(out)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        if len(images) == 0:
            return torch.empty(0)
        return self.flip_severities(images).float().std(dim=1, unbiased=False)

    def _predict(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.batch_size
        return torch.cat([classifier_logits(self.classifier, images[i:i + size], self.config.precision)
                          .argmax(dim=-1).cpu() for i in range(0, len(images), size)])

    def forward_passes_per_image(self) -> float:
        return float(1 + len(self.config.corruptions) * self.config.max_severity)
