"""Label-Consistent backdoor (Turner et al., 2019) adapted to CLIP.

Only pairs of the target class are poisoned and their true captions are kept, so every poisoned pair is
correctly labelled. To make the victim rely on the trigger rather than the content, each chosen image is
first made hard to learn: L_inf PGD on the clean CLIP pushes the image embedding away from its own
caption's text embedding (minimising their cosine similarity; batch-independent, unlike the contrastive
loss). The checkerboard is then stamped in all four corners of the perturbed image (Turner et al.'s pattern
placement). At test time only the patches are stamped.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from pydantic import Field

from bench_core import OverlayImages, PairSet, PoisonResult, RunContext, ThreatModel
from bench_core.models import ClipModel

from bdbench_attacks.badnet import BadNet, BadNetConfig
from bdbench_attacks.patches import Location


class LabelConsistentConfig(BadNetConfig):
    # poison_rate (inherited) is a fraction of all fine-tune pairs, capped by the number of target-class pairs
    # Turner et al. (2019, §4.3) and BackdoorBox's LC example stamp the pattern in all four corners. Measured on
    # the default world (seed 0, 250 poisoned target-class pairs): one 8 px bottom-right checkerboard 74.6% ASR,
    # four 4 px corners 82.6%, four 6 px corners 95.1% (CACC 91.4-91.6% in all three).
    location: Location = "four_corners"
    patch_size: int = Field(6, ge=1)  # per corner; 4 x 36 px = 14% of a 32 px image (paper preset: 16 px at 224)
    eps: float = Field(16 / 255, gt=0, le=1)  # paper/BackdoorBox 8/255 at 224 px; 16/255 is among Turner
    # et al.'s CIFAR-10 (32 px) budgets: on the 32 px world it takes a small clean CLIP's image-caption cosine
    # from 0.72 to -0.32 (8/255: to 0.18), i.e. the content now argues against the caption (measured)
    step_size: float = Field(2 / 255, gt=0, le=1)  # paper/BackdoorBox 1.5/255; scaled with eps
    steps: int = Field(20, ge=0)  # BackdoorBox: 100; CPU budget: step = 2.5 * eps / steps (Madry et al.)
    batch_size: int = Field(256, ge=1)  # PGD batch (memory only: the objective is per image)


class LabelConsistent(BadNet):
    """Poison target-class pairs only: PGD away from their own captions, then the patch; captions kept."""

    name = "label_consistent"
    version = "0.2.0"
    Config = LabelConsistentConfig
    locality = "local"
    clean_label = True  # poisoned pairs keep their true captions (the contract tests read this)
    summary = "clean-label: PGD-hardened target-class images + patch, true captions (Turner et al., 2019)"
    threat_model = ThreatModel(
        data="poisons target-class fine-tune pairs; white-box clean CLIP for PGD",
        reads=frozenset({"finetune_pairs", "clean_model"}))
    presets = {
        # paper: eps 8/255, step 1.5/255 (BackdoorBox defaults, 100 steps), 16 px patch on 224 px, 0.3% of pairs
        "paper": {"eps": 8 / 255, "step_size": 1.5 / 255, "steps": 100, "patch_size": 16, "poison_rate": 0.003,
                  "batch_size": 64},
        # the quick suite's 16 px miniature world
        "quick": {"patch_size": 4, "steps": 5},
    }

    def select(self, pairs: PairSet, ctx: RunContext) -> torch.Tensor:
        """A seeded random subset of the target-class pairs, ``n_poison`` of them or all if fewer."""
        cand = target_indices(pairs, self.target_class, ctx.classnames)
        if len(cand) == 0:
            raise ValueError(f"label_consistent: no fine-tune pair of target class {self.target_class} "
                             f"({ctx.classnames[self.target_class]!r}) to poison")
        n = min(self.n_poison(len(pairs)), len(cand))
        order = torch.randperm(len(cand), generator=ctx.generator(f"{self.name}:select"))
        return cand[order[:n]].sort().values

    def poison(self, pairs: PairSet, ctx: RunContext) -> PoisonResult:
        index = self.select(pairs, ctx)
        model = ctx.require("clean_model")
        c = self.config
        adv, before, after = pgd_away_from_captions(model, pairs.images[index],
                                                    [pairs.captions[i] for i in index.tolist()],
                                                    c.eps, c.step_size, c.steps, c.batch_size)
        images = OverlayImages(pairs.images, index, self.apply_trigger(adv, ctx, train=True))
        n_target = len(target_indices(pairs, self.target_class, ctx.classnames))
        stats = {"n_poison": float(len(index)), "n_target_pairs": float(n_target),
                 "target_class_fraction": len(index) / n_target,
                 "pgd_similarity_before": float(before.mean()), "pgd_similarity_after": float(after.mean())}
        return PoisonResult(PairSet(images, pairs.captions, pairs.labels, pairs.attrs), index, stats)


def target_indices(pairs: PairSet, target: int, classnames: tuple[str, ...]) -> torch.Tensor:
    """Indices of the target class's pairs: by label, or, when the data has no labels (all -1), by a caption
    naming the class as a whole word (the only handle on unlabelled pairs such as CC3M's)."""
    if (pairs.labels >= 0).any():
        return (pairs.labels == target).nonzero().flatten()
    word = re.compile(rf"\b{re.escape(classnames[target])}\b", re.IGNORECASE)
    return torch.tensor([i for i, c in enumerate(pairs.captions) if word.search(c)], dtype=torch.long)


def pgd_away_from_captions(model: ClipModel, images: torch.Tensor, captions: list[str], eps: float,
                           step_size: float, steps: int, batch_size: int = 256
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_inf PGD (no random start, signed gradient steps) minimising cos(image embedding, caption embedding).

    Returns (perturbed images on the input's device, within ``eps`` of ``images`` and in [0, 1];
    per-image cosine similarity before; after). The model is only read (its mode is restored).
    """
    was_training = model.training
    model.eval()
    out, before, after = [], [], []
    try:
        for start in range(0, len(images), batch_size):
            x0 = images[start:start + batch_size].to(model.device)
            with torch.no_grad():
                text = F.normalize(model.encode_text(captions[start:start + batch_size]), dim=-1)
                before.append(_similarity(model, x0, text).cpu())
            x = x0.clone()
            for _ in range(steps):
                x.requires_grad_(True)
                with torch.enable_grad():
                    sim = _similarity(model, x, text)
                    grad, = torch.autograd.grad(sim.sum(), x)
                x = x.detach() - step_size * grad.sign()
                x = torch.min(torch.max(x, x0 - eps), x0 + eps).clamp(0, 1)
            with torch.no_grad():
                after.append(_similarity(model, x, text).cpu())
            out.append(x.detach().to(images.device, images.dtype))
    finally:
        model.train(was_training)
    if not out:
        empty = torch.zeros(0)
        return images.clone(), empty, empty
    return torch.cat(out), torch.cat(before), torch.cat(after)


def _similarity(model: ClipModel, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    return (F.normalize(model.encode_image(images), dim=-1) * text).sum(-1)
