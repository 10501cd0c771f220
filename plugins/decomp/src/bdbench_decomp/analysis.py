"""Helpers the decomposition probes share: decompose through a classifier's input stage, predict from an
edited decomposition, two-sample distances, and figure-sized subsamples.

Probes analyse the model under ``classifier``: its ``input_transform`` (e.g. PDB's stamp) and ``output_map``
are applied, but an ``embedder`` swap made by an inference defense is not (the probe decomposes the model
itself; that is what it studies).
"""

from __future__ import annotations

import torch

from bench_core import ZeroShotClassifier
from bench_core.decomposition import Decomposition, decompose_batched
from bench_core.metrics import accuracy, asr


def as_model_sees(classifier: ZeroShotClassifier, images: torch.Tensor) -> torch.Tensor:
    """``images`` after the classifier's input transform (an inference defense's, e.g. PDB's Δ1), if any."""
    transform = getattr(classifier, "input_transform", None)
    return images if transform is None else transform(images)


def decompose_inputs(classifier: ZeroShotClassifier, images: torch.Tensor) -> Decomposition:
    """Decomposition (on the CPU) of ``images`` as the classifier's model sees them."""
    return decompose_batched(classifier.model, as_model_sees(classifier, images))


@torch.no_grad()
def predict(classifier: ZeroShotClassifier, d: Decomposition) -> torch.Tensor:
    """(N,) CPU predictions of the zero-shot head on the re-summed decomposition."""
    logits = classifier.logits_from_embeddings(d.total().to(classifier.model.device))
    output_map = getattr(classifier, "output_map", None)
    if output_map is not None:
        logits = output_map(logits)
    return logits.argmax(dim=1).cpu()


def cacc_asr(classifier: ZeroShotClassifier, clean: Decomposition, triggered: Decomposition,
             clean_labels: torch.Tensor, triggered_labels: torch.Tensor, target: int) -> tuple[float, float]:
    """CACC on the clean decomposition and ASR (non-target triggered images, SPEC §5) on the triggered one."""
    return (accuracy(predict(classifier, clean), clean_labels),
            asr(predict(classifier, triggered), triggered_labels, target))


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical CDFs of 1-D ``a``, ``b``."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, grid, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, grid, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


def mmd_rbf(x: torch.Tensor, y: torch.Tensor) -> float:
    """Biased MMD^2 between samples ``x`` (N, D) and ``y`` (M, D) with a Gaussian kernel whose bandwidth is the
    median pairwise distance of the pooled sample (the median heuristic)."""
    x, y = x.double(), y.double()
    pooled = torch.cat([x, y])
    dist2 = torch.cdist(pooled, pooled).pow(2)
    off_diagonal = dist2[~torch.eye(len(pooled), dtype=torch.bool)]
    sigma2 = float(off_diagonal.median()) if len(off_diagonal) else 1.0
    k = torch.exp(-dist2 / (2 * sigma2 if sigma2 > 0 else 1.0))
    n = len(x)
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())


def subsample(values: torch.Tensor, limit: int, generator: torch.Generator) -> list[float]:
    """At most ``limit`` of ``values`` (1-D), drawn without replacement, rounded to 4 decimals for payloads."""
    if len(values) > limit:
        values = values[torch.randperm(len(values), generator=generator)[:limit]]
    return [round(float(v), 4) for v in values]
