"""BadCLIP tuned against a post-training defense (CleanCLIP): the patch must survive a clean fine-tune.

CleanCLIP re-aligns a backdoored CLIP by fine-tuning it on clean pairs. BadCLIP's patch is optimised on the
clean CLIP toward the target's text and image embeddings (natural target features, which a clean fine-tune
has no reason to erase). This white-box variant runs the targeted defense itself — its own config, on the
attacker's clean data (``surrogate_pairs`` of its fine-tune pairs; it does not have the defender's held-out
set) — on a copy of the clean CLIP, and optimises the patch on both models in turn (expectation over the
defense), so the trigger's features are those that survive the repair.

The alternation needs the optimisation run to convergence: at BadCLIP's 300 steps the patch stays close to the
plain one. Measured at seed 0 on the default suite's world against CleanCLIP at 4x its learning rate (the attack
unit test's target, which lowers plain BadCLIP from 98.4 to 66.6% ASR): this attack at 300 steps 67.4%, at
1,500 steps 82.0% (98.3% without a defense); plain BadCLIP at 1,500 steps 55.7% — the gain comes from the
repaired surrogate, not from the longer optimisation.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import ClassVar

import torch
from pydantic import Field

from bench_core import AdaptiveAttack, PostTrainDefense, RunContext, ThreatModel

from bdbench_attacks.badclip import BadCLIP, BadCLIPConfig


class BadCLIPRobustConfig(BadCLIPConfig):
    steps: int = Field(1500, ge=0)  # 5x BadCLIP's 300: the two-model alternation converges slowly (module docstring)
    surrogate_pairs: int = Field(1000, ge=2)  # attacker's clean pairs for the surrogate repair (CleanCLIP's 1,000)


class BadCLIPRobust(AdaptiveAttack, BadCLIP):
    name = "badclip_robust"
    version = "0.2.0"
    Config = BadCLIPRobustConfig
    plain = "badclip"
    defeats = "patch optimised on the clean CLIP and on a surrogate repaired by the defense itself"
    summary = "BadCLIP whose patch is optimised to survive the targeted post-training defense (white-box)"
    target_access: ClassVar[str] = "white_box"
    threat_model = ThreatModel(
        data="poisons a fraction of the fine-tune pairs; white-box clean CLIP and the post-training defense "
             "(run on its own clean pairs)",
        knowledge="the post-training defense's code and config (white-box), not its held-out data",
        reads=frozenset({"finetune_pairs", "clean_model"}))

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        return kind == "defense" and stage == "post_train"

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        clean = ctx.require("clean_model")
        pairs = ctx.require("finetune_pairs")
        defenses = [t.plugin for t in ctx.targets if isinstance(t.plugin, PostTrainDefense)]
        if not defenses:
            raise ValueError(f"{self.name} targets a post-training defense; got {[t.label for t in ctx.targets]}")
        own = torch.randperm(len(pairs), generator=ctx.generator(f"{self.name}:surrogate"))
        own = own[:self.config.surrogate_pairs].sort().values
        models, stats = [clean], {}
        for defense in defenses:
            surrogate = copy.deepcopy(clean)
            repair = defense.repair(surrogate, replace(ctx, heldout=pairs.subset(own)))
            models.append(surrogate.eval())
            stats[f"metric_surrogate_{defense.name}_loss"] = torch.tensor(float(repair.get("loss", float("nan"))))
        state = self.optimise(models, ctx)
        state.update(stats)
        return state
