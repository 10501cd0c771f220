"""Median-filter input purification: a k x k median filter on every test image before the model sees it.

Smoothing the input is the classic training-free purification baseline against patch triggers: a median
filter removes isolated high-contrast pixels (a noise or checkerboard patch) while keeping edges, so a small
trigger loses much of its signal. It costs clean accuracy on small images and does little against blended or
sample-specific perturbations. The defense needs no data and knows nothing about the attack.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from bench_core import Classifier, InferenceDefense, PluginConfig, RunContext, ThreatModel, ZeroShotClassifier


class MedianFilterConfig(PluginConfig):
    kernel_size: int = Field(3, ge=1, le=15)  # 3 x 3: the usual purification setting; 1 = identity (a sanity row)

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, k: int) -> int:
        if k % 2 == 0:
            raise ValueError(f"kernel_size must be odd so the window is centred on its pixel, got {k}")
        return k


def median_filter(images: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Per-channel k x k median of (N, C, H, W) images, with reflected borders; shape and dtype are kept."""
    if kernel_size == 1:
        return images
    pad = kernel_size // 2
    mode = "reflect" if min(images.shape[-2:]) > pad else "replicate"  # reflect needs pad < the image side
    padded = F.pad(images, (pad, pad, pad, pad), mode=mode)
    windows = padded.unfold(2, kernel_size, 1).unfold(3, kernel_size, 1)  # (N, C, H, W, k, k)
    return windows.flatten(-2).median(dim=-1).values


class MedianFilter(InferenceDefense):
    """Filter every input, then classify with whatever classifier the pipeline built so far."""

    name = "example_median_filter"
    version = "0.1.0"  # bump whenever the numbers this defense produces can change
    Config = MedianFilterConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(data="none", knowledge="none", reads=frozenset())
    summary = "k x k median filter on every test input (input-purification baseline; example plugin)"

    def wrap(self, classifier: Classifier, ctx: RunContext) -> Classifier:
        if not isinstance(classifier, ZeroShotClassifier):
            raise TypeError(f"{self.name} needs a ZeroShotClassifier to swap its input transform, "
                            f"got {type(classifier).__name__}")
        k = self.config.kernel_size
        earlier = classifier.input_transform  # e.g. PDB's trigger stamp: it must see the filtered image

        def transform(images: torch.Tensor) -> torch.Tensor:
            filtered = median_filter(images, k)
            return earlier(filtered) if earlier is not None else filtered

        return classifier.replace(input_transform=transform)

    def forward_passes_per_image(self) -> float:
        return 1.0  # the filter is not a model forward pass
