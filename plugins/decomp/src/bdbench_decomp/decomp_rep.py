"""Decomp-Rep (paper §4, Algorithm 1): repair infected head and MLP contributions with clean prototypes.

The paper's code picks head repair for patch attacks and MLP repair for blended ones from the known attack
type — an oracle. The default here does not know the attack: it always repairs last-layer heads whose
cosine similarity to their prototype falls below the calibrated epsilon, and mean-ablates the late MLPs
(the paper's "last five" of 12 layers, scaled to the model's depth). ``decomp_rep.oracle`` reproduces the
reference behaviour and is labelled oracle.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from bench_core import RunContext, ThreatModel
from bench_core.decomposition import Decomposition

from bdbench_decomp.prototypes import Prototypes, default_late_layers
from bdbench_decomp.repair import RepairConfig, RepairDefense, replace_heads, replace_mlps


class DecompRepConfig(RepairConfig):
    mlp_layers: int | None = Field(None, ge=0)  # None: the paper's last 5 of 12 layers, scaled to the depth
    repair: Literal["both", "heads", "mlps"] = "both"  # attack-agnostic default: both


class DecompRep(RepairDefense):
    name = "decomp_rep"
    version = "0.1.0"
    Config = DecompRepConfig
    summary = "repair low-similarity last-layer heads and late MLPs with clean prototypes (attack-agnostic)"

    def late_layers(self, d: Decomposition) -> list[int]:
        if self.config.mlp_layers is None:
            return default_late_layers(d.n_layers)
        return list(range(d.n_layers - self.config.mlp_layers, d.n_layers))

    def mode(self, ctx: RunContext) -> str:
        return self.config.repair

    def edit(self, d: Decomposition, protos: Prototypes, ctx: RunContext) -> Decomposition:
        mode = self.mode(ctx)
        if mode in ("both", "heads"):
            d = replace_heads(d, protos, protos.infected_heads(d))
        if mode in ("both", "mlps"):
            d = replace_mlps(d, protos, self.late_layers(d))
        return d


class DecompRepOracle(DecompRep):
    """The reference code's behaviour: heads for local (patch) attacks, MLPs for global ones."""

    name = "decomp_rep.oracle"
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        data="clean reference: 20% of the test split, unlabelled", knowledge="knows attack type (local/global)",
        oracle=True, reads=frozenset({"clean_reference", "attack"}))
    summary = "Decomp-Rep choosing heads or MLPs from the attack's known type (as the reference code)"

    def mode(self, ctx: RunContext) -> str:
        attack = ctx.attack
        if attack is None:  # clean model: no attack to know about; repair heads, the paper's default branch
            return "heads"
        return "heads" if attack.locality == "local" else "mlps"
