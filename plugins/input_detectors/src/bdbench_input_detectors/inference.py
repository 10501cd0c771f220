"""The one way these detectors query a classifier: fp32 logits, the image tower under the configured precision.

STRIP, SCALE-UP and TeCo run 6-64 forward passes per scored image, so their cost is the classifier's forward.
Under ``bf16`` (default) the image tower runs under bf16 autocast, 1.75x faster on the 2-core AVX512-BF16 CPU;
the logits themselves are always fp32 (:meth:`bench_core.ZeroShotClassifier.logits_from_embeddings`).
"""

from __future__ import annotations

import torch

from bench_core import Classifier, Precision, autocast_numerics


@torch.no_grad()
def classifier_logits(classifier: Classifier, images: torch.Tensor, precision: Precision) -> torch.Tensor:
    """(N, K) fp32 logits of ``images``, computed on the classifier's device (that of its class weights)."""
    with autocast_numerics(classifier.class_weights.device, precision):
        return classifier.logits(images).float()
