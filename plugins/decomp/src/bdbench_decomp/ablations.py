"""The paper's ablation rows of Decomp-Rep (Tables 3 and 5) as inference defenses.

Every row decomposes the embedding, edits some direct contributions and re-sums (:class:`RepairDefense`):

- ``base_decomp``: no edit ("Base-Decomp"); equals no defense up to float rounding.
- ``decomp_rep.fixed_first3`` / ``fixed_middle3`` / ``fixed_last3``: the first / middle / last three
  last-layer heads of every image, by their prototypes (paper [1,2,3], [7,8,9], [10,11,12] of 12 heads).
  Heads only, no MLP repair: the paper's Table 3 rows mean-ablate fixed AHs and nothing else. With fewer
  than 6 heads the middle and last sets overlap (4 heads: [1,2,3] for both).
- ``decomp_rep.random_heads``: per image, randomly chosen last-layer heads by their prototypes ("Random AHs").
- ``decomp_rep.no_heads`` / ``no_mlps``: every head of every layer / every MLP mean-ablated ("w/o All AHs",
  "w/o All MLPs").
- ``decomp_rep.abandon`` / ``random_prototypes``: Decomp-Rep's selection (same config, heads and late MLPs),
  replaced with zeros / standard-normal vectors ("w Abandon", "w Random Prototypes").
- ``decomp_reverse``: the HIGHEST-similarity last-layer heads, as many per image as Decomp-Rep selects.

Random rows are deterministic: inside the wrapped classifier each image's draws come from a generator seeded
by ``ctx.generator(salt)`` and a hash of the image's values, so an image gets the same draws whatever batch
it arrives in; a direct ``edit(d, ...)`` call (no images) keys the draws by row index instead.

``decomp_reverse`` — our reading. The paper's "Decomp-Reverse" (§5.3, Table 3, and ``head_reverse`` in its
code) is not a defense: it pastes the selected heads of *triggered* images into the same heads of *clean*
images and shows that ASR rises on those clean images. That needs triggered images, which an inference defense
never sees, so it lives in the ``head_transplant`` probe. The defense row registered here is the selection
control: keep Decomp-Rep's per-image count but repair the heads that look most clean; if Decomp-Rep's
selection matters, this row keeps ASR high while costing CACC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import NonNegativeInt

from bench_core import PluginConfig, RunContext, ThreatModel, ZeroShotClassifier
from bench_core.decomposition import Decomposition, decompose, decompose_batched
from bench_core.models import ClipModel

from bdbench_decomp.decomp_rep import DecompRep
from bdbench_decomp.mean_ablation import ablate_all
from bdbench_decomp.per_image import Seeds, image_seeds, per_image_draw, position_seeds
from bdbench_decomp.prototypes import Prototypes, fit_from_decomposition
from bdbench_decomp.repair import RepairConfig, RepairDefense, replace_heads, substitute_heads, substitute_mlps


# --- helpers ----------------------------------------------------------------------------------------------

def lowest_k_mask(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(N, H) bool marking, per row, the ``k[i]`` entries with the lowest ``scores`` (ties: lower index)."""
    ranks = scores.argsort(dim=1, stable=True).argsort(dim=1)
    return ranks < k.to(ranks.device).unsqueeze(1)


def fixed_head_indices(position: str, n_heads: int, count: int = 3) -> list[int]:
    """The paper's fixed heads mapped to ``n_heads``: first / middle / last ``count`` (0-based).

    With 12 heads this gives [0,1,2], [6,7,8], [9,10,11] — the paper's 1-based [1,2,3], [7,8,9], [10,11,12];
    "middle" starts at H // 2, moved left when fewer than ``count`` heads follow it."""
    k = min(count, n_heads)
    start = {"first": 0, "middle": min(n_heads // 2, n_heads - k), "last": n_heads - k}[position]
    return list(range(start, start + k))


# --- Base-Decomp ------------------------------------------------------------------------------------------

class BaseDecomp(RepairDefense):
    """Decompose and re-sum with no edit. Reads nothing: it fits no prototypes (a deliberate difference from
    the other rows' clean-reference threat model — claiming a clean reference it never uses would mislead)."""

    name = "base_decomp"
    version = "0.1.0"
    Config = PluginConfig  # no options
    threat_model: ClassVar[ThreatModel] = ThreatModel(data="none", knowledge="none", reads=frozenset())
    summary = "decompose the image embedding and re-sum it unchanged (paper Base-Decomp)"

    def wrap(self, classifier: ZeroShotClassifier, ctx: RunContext) -> ZeroShotClassifier:
        model = classifier.model
        return classifier.replace(embedder=lambda images: decompose(model, images).total())

    def edit(self, d: Decomposition, protos: Prototypes | None, ctx: RunContext) -> Decomposition:
        return d.clone()


# --- fixed heads ------------------------------------------------------------------------------------------

class FixedHeadsConfig(PluginConfig):
    # 0-based last-layer heads to replace; None: the variant's paper position (first / middle / last three)
    heads: tuple[NonNegativeInt, ...] | None = None


class FixedHeads(RepairDefense):
    """Replace the same last-layer heads of every image by their prototypes (heads only, no MLPs)."""

    version = "0.1.0"
    Config = FixedHeadsConfig
    position: ClassVar[str]

    def heads(self, n_heads: int) -> list[int]:
        if self.config.heads is None:
            return fixed_head_indices(self.position, n_heads)
        heads = list(self.config.heads)
        if any(h >= n_heads for h in heads):
            raise ValueError(f"{self.name}: heads {heads} out of range for {n_heads} heads")
        return heads

    def edit(self, d: Decomposition, protos: Prototypes, ctx: RunContext) -> Decomposition:
        mask = torch.zeros(len(d.heads), d.n_heads, dtype=torch.bool, device=d.heads.device)
        mask[:, self.heads(d.n_heads)] = True
        return replace_heads(d, protos, mask)


class FixedFirst3(FixedHeads):
    name = "decomp_rep.fixed_first3"
    position = "first"
    summary = "always repair the first three last-layer heads with prototypes (paper Fixed [1,2,3])"


class FixedMiddle3(FixedHeads):
    name = "decomp_rep.fixed_middle3"
    position = "middle"
    summary = "always repair three middle last-layer heads with prototypes (paper Fixed [7,8,9])"


class FixedLast3(FixedHeads):
    name = "decomp_rep.fixed_last3"
    position = "last"
    summary = "always repair the last three last-layer heads with prototypes (paper Fixed [10,11,12])"


# --- random heads -----------------------------------------------------------------------------------------

@dataclass
class CountedPrototypes(Prototypes):
    """Prototypes plus Decomp-Rep's mean number of selected heads on the clean reference (rounded, >= 1)."""

    reference_count: int = 1

    def to(self, device: torch.device | str) -> "CountedPrototypes":
        base = super().to(device)
        return CountedPrototypes(base.mean, base.head_epsilon, base.mlp_epsilon, self.reference_count)


class RandomHeadsConfig(RepairConfig):
    # heads per image. "matched": as many as Decomp-Rep selects on that image (same count, random positions —
    # isolates *which* heads from *how many*); "reference": Decomp-Rep's mean count on the clean reference,
    # rounded, at least 1 (about epsilon_quantile * H by construction of the threshold); an int: that many
    n_heads: Literal["matched", "reference"] | NonNegativeInt = "matched"


class RandomHeads(RepairDefense):
    """Per image, replace randomly chosen last-layer heads by their prototypes (paper "Random AHs")."""

    name = "decomp_rep.random_heads"
    version = "0.1.0"
    Config = RandomHeadsConfig
    summary = "repair randomly chosen last-layer heads with prototypes, Decomp-Rep's count (paper Random AHs)"

    def fit(self, model: ClipModel, reference: torch.Tensor, ctx: RunContext) -> CountedPrototypes:
        d = decompose_batched(model, reference)
        p = fit_from_decomposition(d, self.epsilon_quantile)
        count = max(1, round(float(p.infected_heads(d).sum(dim=1).float().mean())))
        return CountedPrototypes(p.mean, p.head_epsilon, p.mlp_epsilon, count)

    def counts(self, d: Decomposition, protos: Prototypes) -> torch.Tensor:
        """(N,) number of heads to replace per image."""
        n = self.config.n_heads
        if n == "matched":
            return protos.infected_heads(d).sum(dim=1)
        if n == "reference":
            if not isinstance(protos, CountedPrototypes):
                raise ValueError("n_heads='reference' needs prototypes from RandomHeads.fit")
            n = protos.reference_count
        return torch.full((len(d.heads),), min(n, d.n_heads), dtype=torch.long)

    def edit(self, d: Decomposition, protos: Prototypes, ctx: RunContext, seeds: Seeds | None = None
             ) -> Decomposition:
        seeds = seeds if seeds is not None else position_seeds(len(d.heads), self._base(ctx))
        scores = per_image_draw(seeds, lambda g: torch.rand(d.n_heads, generator=g)).to(d.heads.device)
        return replace_heads(d, protos, lowest_k_mask(scores, self.counts(d, protos)))

    def edit_batch(self, images, d, protos, ctx):
        return self.edit(d, protos, ctx, image_seeds(images, self._base(ctx)))

    def _base(self, ctx: RunContext) -> int:
        return ctx.generator(f"{self.name}:heads").initial_seed()


# --- all heads / all MLPs ---------------------------------------------------------------------------------

class NoHeads(RepairDefense):
    """Mean-ablate the direct contribution of every head of every layer (paper "w/o All AHs")."""

    name = "decomp_rep.no_heads"
    version = "0.1.0"
    Config = PluginConfig  # no options
    summary = "mean-ablate every attention head of every layer (paper w/o All AHs)"

    def edit(self, d: Decomposition, protos: Prototypes, ctx: RunContext) -> Decomposition:
        return ablate_all(d, protos.mean, "heads")


class NoMlps(RepairDefense):
    """Mean-ablate the direct contribution of every MLP (paper "w/o All MLPs")."""

    name = "decomp_rep.no_mlps"
    version = "0.1.0"
    Config = PluginConfig  # no options
    summary = "mean-ablate every MLP (paper w/o All MLPs)"

    def edit(self, d: Decomposition, protos: Prototypes, ctx: RunContext) -> Decomposition:
        return ablate_all(d, protos.mean, "mlps")


# --- Decomp-Rep's selection, other replacement values -----------------------------------------------------

class _SubstitutingRep(DecompRep):
    """Decomp-Rep's selection (low-similarity last-layer heads and/or the late MLPs, same config), replaced by
    :meth:`values` instead of the prototypes."""

    def values(self, d: Decomposition, protos: Prototypes, ctx: RunContext, seeds: Seeds | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replacement head terms (broadcastable to (N, H, D)) and MLP terms ((1 or N, L, D))."""
        raise NotImplementedError

    def edit(self, d: Decomposition, protos: Prototypes, ctx: RunContext, seeds: Seeds | None = None
             ) -> Decomposition:
        mode = self.mode(ctx)
        head_values, mlp_values = self.values(d, protos, ctx, seeds)
        out = d
        if mode in ("both", "heads"):
            out = substitute_heads(out, head_values, protos.infected_heads(d))
        if mode in ("both", "mlps"):
            out = substitute_mlps(out, mlp_values, self.late_layers(d))
        return out if out is not d else d.clone()


class Abandon(_SubstitutingRep):
    """Decomp-Rep with selected terms set to zero (paper "w Abandon"; the code's ``zero_value_ablate``)."""

    name = "decomp_rep.abandon"
    version = "0.1.0"
    summary = "Decomp-Rep's selected heads and late MLPs set to zero instead of prototypes (paper w Abandon)"

    def values(self, d, protos, ctx, seeds):
        return d.heads.new_zeros(1, d.n_heads, d.heads.shape[-1]), d.mlps.new_zeros(1, d.n_layers, d.mlps.shape[-1])


class RandomPrototypes(_SubstitutingRep):
    """Decomp-Rep with selected terms replaced by standard-normal vectors (paper "w Random Prototypes").

    As the paper's code (``random_value_ablate``): head values are drawn afresh for each image, MLP values once
    per layer and shared by all images. Unscaled N(0, 1), as the paper: in a D-dim embedding space its norm
    (about sqrt(D)) dwarfs a real head's contribution, which is why this row destroys CACC."""

    name = "decomp_rep.random_prototypes"
    version = "0.1.0"
    summary = "Decomp-Rep's selected terms replaced with standard-normal vectors (paper w Random Prototypes)"

    def values(self, d, protos, ctx, seeds):
        dim = d.heads.shape[-1]
        seeds = seeds if seeds is not None else position_seeds(len(d.heads), self._base(ctx, "heads"))
        heads = per_image_draw(seeds, lambda g: torch.randn(d.n_heads, dim, generator=g))
        mlps = torch.randn(1, d.n_layers, dim, generator=torch.Generator().manual_seed(self._base(ctx, "mlps")))
        return heads.to(d.heads.device), mlps.to(d.mlps.device)

    def edit_batch(self, images, d, protos, ctx):
        return self.edit(d, protos, ctx, image_seeds(images, self._base(ctx, "heads")))

    def _base(self, ctx: RunContext, what: str) -> int:
        return ctx.generator(f"{self.name}:{what}").initial_seed()


# --- reverse selection ------------------------------------------------------------------------------------

class DecompReverse(RepairDefense):
    """Per image, replace the k HIGHEST-similarity last-layer heads by their prototypes, k = the number
    Decomp-Rep selects (similarity < epsilon) on that image. Heads only (see the module docstring)."""

    name = "decomp_reverse"
    version = "0.1.0"
    Config = RepairConfig
    summary = "repair the most prototype-like last-layer heads instead, Decomp-Rep's count (selection control)"

    def edit(self, d: Decomposition, protos: Prototypes, ctx: RunContext) -> Decomposition:
        k = protos.infected_heads(d).sum(dim=1)
        return replace_heads(d, protos, lowest_k_mask(-protos.head_similarity(d), k))


ABLATIONS: tuple[type[RepairDefense], ...] = (
    BaseDecomp, FixedFirst3, FixedMiddle3, FixedLast3, RandomHeads, NoHeads, NoMlps, Abandon, RandomPrototypes,
    DecompReverse)
