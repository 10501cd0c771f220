"""PDB — Proactive Defensive Backdoor (Wei, Zha & Wu, NeurIPS 2024), ported from supervised classifiers to CLIP.

Training (:meth:`PDB.plan_training`): the defender keeps every fine-tune pair and adds a reserved set of
defensive pairs — the reserved image stamped with Δ1, its caption rewritten to name h(y) — each repeated
``repeat`` times per epoch. The fine-tune loop's random shift is the only augmentation they get (the
reference also rotates, rescales and flips them).

Inference (:meth:`PDB.wrap`): Δ1 is stamped on every input and the zero-shot logits are mapped back with
h⁻¹, so a prediction of class h(y) reads as y. The hope carried over from the paper: Δ1 dominates any
malicious trigger, so a triggered image also goes to h(y) and comes back as its true class.

Port decisions: "labels" become captions naming a class (CLIP learns the defensive backdoor as "Δ1 means
the caption names the next class"); zero-shot class prompts are unchanged, so h acts on the prompt index.

Variants: ``pdb`` (realistic) reserves from the (possibly poisoned) fine-tune pairs it is given, labelled by
the class their captions name; ``pdb.oracle_reserve`` reserves clean held-out pairs, like the reference code,
whose reserve indices come from the poisoned set but whose images and labels come from the clean data.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from bench_core import (PairSet, PluginConfig, RunContext, ThreatModel, TrainDefense, TrainingPlan, ZeroShotClassifier,
                        map_images)

from bdbench_pdb.reserve import LabelSource, defender_labels, stratified_draw
from bdbench_pdb.trigger import DefensiveTrigger, LabelShift


class PDBConfig(PluginConfig):
    # Δ1. The reference uses a 7x7 patch (trigger_type 1) on 32 px CIFAR-10 and 64 px Tiny-ImageNet alike.
    # Default suite: 4x4 — the generated world draws "top left" shapes to within ~3 px of the corner, which a
    # 7x7 patch would partly cover (CIFAR objects are centred); 4 px is a quarter of the tiny ViT's first
    # 8 px token. The reference's 7 is in presets["reference"].
    patch_size: int = Field(4, ge=1)
    # Reference pix_value 2.0: outside [0, 1], so no natural image holds it — and no 8-bit image either
    # (JPEG / PNG / uint8 clip it to 1.0; see the pdb_robustness probe). presets["in_range"]: 1.0 checkerboard.
    trigger_value: float = 2.0
    pattern: Literal["solid", "checkerboard"] = "solid"  # reference: solid; checkerboard alternates value and 0
    shift: int = 1  # reference target_type 1: h(y) = (y + 1) mod K
    reserve_fraction: float = Field(0.1, gt=0, le=1)  # reference ratio 0.1 (of the training set size)
    repeat: int = Field(5, ge=1)  # reference sample_frequency 5: each defensive pair 5x per epoch
    # Where the defender's labels come from (see reserve.py): the class a caption names (the realistic reading
    # of "poisoned labels") or the PairSet labels column (ground truth: a clean-label leak for poisoned pairs).
    label_source: LabelSource = "caption"


class PDB(TrainDefense):
    """Inject a defensive backdoor (Δ1 -> h(y)) during the fine-tune; stamp Δ1 and undo h at inference."""

    name = "pdb"
    version = "0.1.0"
    Config = PDBConfig
    summary = "proactive defensive backdoor: Δ1 -> h(y) during fine-tune, Δ1 + h⁻¹ at inference (Wei et al., 2024)"
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        data="controls the fine-tune and the inference input; reserve: 10% of the (possibly poisoned) fine-tune "
             "pairs, labelled by the class their captions name",
        knowledge="none", reads=frozenset())
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # The reference code's CIFAR-10 / Tiny-ImageNet settings (config/defense/pdb/*.yaml).
        "reference": {"patch_size": 7, "trigger_value": 2.0, "pattern": "solid", "shift": 1,
                      "reserve_fraction": 0.1, "repeat": 5},
        # A trigger that survives 8-bit storage exactly (JPEG still blurs it).
        "in_range": {"trigger_value": 1.0, "pattern": "checkerboard"},
        # 224 px ViT-B/32 (no PDB-on-CLIP paper exists): a quarter of the top-left 32 px token, 16 px, the
        # paper's BadNet patch size — the same token fraction as the default suite's 4 px on 8 px tokens.
        "paper": {"patch_size": 16},
    }

    # --- the secrets --------------------------------------------------------------------------------------
    def trigger(self) -> DefensiveTrigger:
        c = self.config
        return DefensiveTrigger(c.patch_size, c.trigger_value, c.pattern)

    def label_map(self, n_classes: int) -> LabelShift:
        return LabelShift(n_classes, self.config.shift)

    # --- training -----------------------------------------------------------------------------------------
    def n_reserve(self, n_pairs: int) -> int:
        return max(1, round(self.config.reserve_fraction * n_pairs))

    def reserve_pool(self, pairs: PairSet, ctx: RunContext) -> PairSet:
        """Where the reserve is drawn from: the fine-tune pairs as given (possibly poisoned)."""
        return pairs

    def reserve(self, pairs: PairSet, ctx: RunContext) -> tuple[PairSet, torch.Tensor]:
        """The reserved pairs (unstamped, captions untouched) and the defender's labels for them."""
        pool = self.reserve_pool(pairs, ctx)
        labels = defender_labels(pool, ctx.classnames, self.config.label_source)
        if not bool((labels >= 0).any()):
            raise ValueError(f"{self.name}: no reserve candidate has a usable label (label_source="
                             f"{self.config.label_source!r}); captions must name one of the class names")
        index = stratified_draw(labels, self.n_reserve(len(pairs)), ctx.generator(f"{self.name}:reserve"))
        return pool.subset(index), labels[index]

    def defensive_pairs(self, reserved: PairSet, labels: torch.Tensor, ctx: RunContext) -> PairSet:
        """Stamp Δ1 on the reserved images and rewrite their captions to name h(y).

        ``labels`` keep the images' own labels (as attacks do for poisoned pairs); the captions carry h."""
        h = self.label_map(len(ctx.classnames))
        rng = ctx.rng(f"{self.name}:captions")
        captions = tuple(ctx.write_caption(int(h.h(int(y))), reserved.attrs[i] if reserved.attrs else None, rng)
                         for i, y in enumerate(labels.tolist()))
        return PairSet(map_images(reserved.images, self.trigger()), captions, reserved.labels, reserved.attrs)

    def plan_training(self, pairs: PairSet, ctx: RunContext) -> TrainingPlan:
        """All fine-tune pairs (repeat 1) followed by the defensive pairs (repeat ``config.repeat``)."""
        reserved, labels = self.reserve(pairs, ctx)
        defensive = self.defensive_pairs(reserved, labels, ctx)
        repeat = torch.cat([torch.ones(len(pairs), dtype=torch.long),
                            torch.full((len(defensive),), self.config.repeat, dtype=torch.long)])
        return TrainingPlan(pairs.concat(defensive), repeat)

    # --- inference ----------------------------------------------------------------------------------------
    def wrap(self, classifier: ZeroShotClassifier, ctx: RunContext) -> ZeroShotClassifier:
        """Stamp Δ1 on every input, map the logits back through h⁻¹. PDB must be the first wrapper."""
        if not hasattr(classifier, "replace"):
            raise TypeError(f"PDB wraps a ZeroShotClassifier (needs .replace), got {type(classifier).__name__}")
        if classifier.input_transform is not None or classifier.output_map is not None:
            raise ValueError("PDB must be the first wrapper: the classifier already has an input transform or "
                             "output map")
        h = self.label_map(len(classifier.class_weights))
        return classifier.replace(input_transform=self.trigger(), output_map=h.unmap_logits)


class PDBOracleReserve(PDB):
    """The reference code's reserve: clean held-out pairs instead of the possibly poisoned fine-tune pairs."""

    name = "pdb.oracle_reserve"
    summary = "PDB with a clean reserve from held-out data (as the reference code; oracle)"
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        data="controls the fine-tune and the inference input; reserve: clean held-out pairs (10% of the "
             "fine-tune size)",
        knowledge="a clean reserve of the training distribution (the reference code takes it from the clean "
                  "data)", oracle=True, reads=frozenset({"heldout"}))

    def reserve_pool(self, pairs: PairSet, ctx: RunContext) -> PairSet:
        return ctx.require("heldout")
