"""Shared machinery of decomposition-repair defenses: fit prototypes, then edit every test decomposition.

A subclass implements :meth:`RepairDefense.edit` (which contributions to replace, and by what); the base class
fits prototypes on the clean reference and returns a classifier whose embedder is the edited sum. Two optional
hooks: :meth:`RepairDefense.fit` (what is learnt from the clean reference) and :meth:`RepairDefense.edit_batch`
(edits that need the raw input images, e.g. per-image random draws keyed by image content).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from pydantic import Field

from bench_core import InferenceDefense, PluginConfig, RunContext, ThreatModel, ZeroShotClassifier
from bench_core.decomposition import Decomposition, decompose
from bench_core.models import ClipModel

from bdbench_decomp.prototypes import Prototypes, fit_prototypes

REFERENCE_THREAT = ThreatModel(data="clean reference: 20% of the test split, unlabelled", knowledge="none",
                               reads=frozenset({"clean_reference"}))

DEFAULT_EPSILON_QUANTILE = 0.05


class RepairConfig(PluginConfig):
    # per-head eps = this quantile of the clean reference's own similarities (SPEC §4: calibrate, never reuse
    # the paper's absolute 0.0025); 0.05 is bdbench's choice, not the paper's
    epsilon_quantile: float = Field(DEFAULT_EPSILON_QUANTILE, gt=0, lt=1)


class RepairDefense(InferenceDefense):
    """Decompose, edit, re-sum: the embedding a decomposition defense hands to zero-shot classification."""

    Config: ClassVar = RepairConfig
    threat_model: ClassVar[ThreatModel] = REFERENCE_THREAT

    @property
    def epsilon_quantile(self) -> float:
        """The config's threshold quantile; variants that select no heads by threshold have none (default)."""
        return getattr(self.config, "epsilon_quantile", DEFAULT_EPSILON_QUANTILE)

    def fit(self, model: ClipModel, reference: torch.Tensor, ctx: RunContext) -> Prototypes:
        """Prototypes and thresholds from the clean reference images (override to learn more from them)."""
        return fit_prototypes(model, reference, self.epsilon_quantile)

    def wrap(self, classifier: ZeroShotClassifier, ctx: RunContext) -> ZeroShotClassifier:
        model = classifier.model
        reference = ctx.require("clean_reference")
        if classifier.input_transform is not None:  # e.g. PDB stamps its trigger: prototypes must see it too
            reference = classifier.input_transform(reference.to(model.device))
        protos = self.fit(model, reference, ctx).to(model.device)

        def embedder(images: torch.Tensor) -> torch.Tensor:
            return self.edit_batch(images, decompose(model, images), protos, ctx).total()

        return classifier.replace(embedder=embedder)

    def edit_batch(self, images: torch.Tensor, d: Decomposition, protos: Prototypes,
                   ctx: RunContext) -> Decomposition:
        """The edit applied inside the wrapped classifier, given the batch's images too. Default: :meth:`edit`."""
        return self.edit(d, protos, ctx)

    @abstractmethod
    def edit(self, d: Decomposition, protos: Prototypes, ctx: RunContext) -> Decomposition:
        """A repaired copy of ``d`` (never modify ``d`` in place)."""


def substitute_heads(d: Decomposition, values: torch.Tensor, mask: torch.Tensor) -> Decomposition:
    """A copy of ``d`` whose last-layer head terms are ``values`` (broadcastable to (N, H, D)) where ``mask``
    (N, H) is set, unchanged elsewhere."""
    out = d.clone()
    last = out.heads[:, -1]
    out.heads[:, -1] = torch.where(mask.unsqueeze(-1), values.to(last.dtype).expand_as(last), last)
    return out


def substitute_mlps(d: Decomposition, values: torch.Tensor, layers: list[int]) -> Decomposition:
    """A copy of ``d`` whose MLP terms at ``layers`` are ``values[:, layer]`` (``values``: (1 or N, L, D))."""
    out = d.clone()
    for layer in layers:
        out.mlps[:, layer] = values[:, layer].to(out.mlps.dtype)
    return out


def replace_heads(d: Decomposition, protos: Prototypes, mask: torch.Tensor) -> Decomposition:
    """Replace last-layer head contributions where ``mask`` (N, H) is set by their prototypes."""
    return substitute_heads(d, protos.mean.heads[:, -1], mask)


def replace_mlps(d: Decomposition, protos: Prototypes, layers: list[int]) -> Decomposition:
    """Mean-ablate the direct contributions of the given MLP layers."""
    return substitute_mlps(d, protos.mean.mlps, layers)
