"""Component prototypes and similarity thresholds fitted on the clean reference set.

Prototypes are per-component means of the direct contributions over clean reference images (paper §4:
"head-specific prototypes"). Thresholds epsilon are calibrated per head as a low quantile of the clean
reference's own cosine similarities — never from test or triggered data — because the paper's absolute
epsilon (0.0025 on ImageNet, a dot product in its code) does not transfer across models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench_core.decomposition import Decomposition, decompose_batched
from bench_core.models import ClipModel


@dataclass
class Prototypes:
    """Mean contributions (batch dim 1) and per-head / per-MLP similarity thresholds."""

    mean: Decomposition
    head_epsilon: torch.Tensor  # (H,) thresholds for last-layer heads
    mlp_epsilon: torch.Tensor  # (L,) thresholds for every MLP layer

    def head_similarity(self, d: Decomposition) -> torch.Tensor:
        """(N, H) cosine similarity of each last-layer head contribution to its prototype."""
        return F.cosine_similarity(d.heads[:, -1], self.mean.heads[:, -1], dim=-1)

    def mlp_similarity(self, d: Decomposition) -> torch.Tensor:
        """(N, L) cosine similarity of each MLP contribution to its prototype."""
        return F.cosine_similarity(d.mlps, self.mean.mlps, dim=-1)

    def infected_heads(self, d: Decomposition) -> torch.Tensor:
        """(N, H) bool: last-layer heads whose similarity falls below their threshold."""
        return self.head_similarity(d) < self.head_epsilon

    def to(self, device: torch.device | str) -> "Prototypes":
        """A copy with every tensor on ``device``."""
        return Prototypes(self.mean.to(device), self.head_epsilon.to(device), self.mlp_epsilon.to(device))


def fit_prototypes(model: ClipModel, reference: torch.Tensor, quantile: float) -> Prototypes:
    """Decompose the clean reference, average it, and calibrate thresholds at the given quantile."""
    if len(reference) < 2:
        raise ValueError(f"the clean reference needs at least 2 images, got {len(reference)}")
    return fit_from_decomposition(decompose_batched(model, reference), quantile)


def fit_from_decomposition(d: Decomposition, quantile: float) -> Prototypes:
    """Prototypes and thresholds from an already decomposed clean reference ``d`` (N >= 2 images).

    Lets a caller that sweeps ``quantile`` (the epsilon_sweep probe) decompose the reference once."""
    if len(d.embed) < 2:
        raise ValueError(f"the clean reference needs at least 2 images, got {len(d.embed)}")
    protos = Prototypes(d.mean(), torch.zeros(d.n_heads), torch.zeros(d.n_layers))
    protos.head_epsilon = torch.quantile(protos.head_similarity(d), quantile, dim=0)
    protos.mlp_epsilon = torch.quantile(protos.mlp_similarity(d), quantile, dim=0)
    return protos


def default_late_layers(n_layers: int, paper_count: int = 5, paper_depth: int = 12) -> list[int]:
    """The paper's "last five MLPs" of a 12-layer ViT, scaled to ``n_layers`` (at least one)."""
    k = max(1, round(paper_count * n_layers / paper_depth))
    return list(range(n_layers - k, n_layers))
