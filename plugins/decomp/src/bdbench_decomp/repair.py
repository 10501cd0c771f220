"""Shared machinery of decomposition-repair defenses: fit prototypes, then edit every test decomposition.

A subclass implements :meth:`RepairDefense.edit` (which contributions to replace, and by what); the base class
fits prototypes on the clean reference and returns a classifier whose embedder is the edited sum.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from pydantic import Field

from bench_core import InferenceDefense, PluginConfig, RunContext, ThreatModel, ZeroShotClassifier
from bench_core.decomposition import Decomposition, decompose

from bdbench_decomp.prototypes import Prototypes, fit_prototypes

REFERENCE_THREAT = ThreatModel(data="clean reference: 20% of the test split, unlabelled", knowledge="none",
                               reads=frozenset({"clean_reference"}))


class RepairConfig(PluginConfig):
    epsilon_quantile: float = Field(0.05, gt=0, lt=1)  # per-head eps = this quantile of clean similarities


class RepairDefense(InferenceDefense):
    """Decompose, edit, re-sum: the embedding a decomposition defense hands to zero-shot classification."""

    Config: ClassVar = RepairConfig
    threat_model: ClassVar[ThreatModel] = REFERENCE_THREAT

    def wrap(self, classifier: ZeroShotClassifier, ctx: RunContext) -> ZeroShotClassifier:
        model = classifier.model
        protos = fit_prototypes(model, ctx.require("clean_reference"), self.config.epsilon_quantile)
        protos.mean = protos.mean.to(model.device)
        protos.head_epsilon = protos.head_epsilon.to(model.device)
        protos.mlp_epsilon = protos.mlp_epsilon.to(model.device)

        def embedder(images: torch.Tensor) -> torch.Tensor:
            return self.edit(decompose(model, images), protos, ctx).total()

        return classifier.replace(embedder=embedder)

    @abstractmethod
    def edit(self, d: Decomposition, protos: Prototypes, ctx: RunContext) -> Decomposition:
        """A repaired copy of ``d`` (never modify ``d`` in place)."""


def replace_heads(d: Decomposition, protos: Prototypes, mask: torch.Tensor) -> Decomposition:
    """Replace last-layer head contributions where ``mask`` (N, H) is set by their prototypes."""
    out = d.clone()
    last = out.heads[:, -1]
    proto = protos.mean.heads[0, -1].expand_as(last)
    out.heads[:, -1] = torch.where(mask.unsqueeze(-1), proto, last)
    return out


def replace_mlps(d: Decomposition, protos: Prototypes, layers: list[int]) -> Decomposition:
    """Mean-ablate the direct contributions of the given MLP layers."""
    out = d.clone()
    for layer in layers:
        out.mlps[:, layer] = protos.mean.mlps[0, layer]
    return out
