"""BadCLIP (Liang et al., CVPR 2024): a patch optimised on the frozen clean CLIP, then BadNet-style poisoning.

Objective (dual-embedding guidance), minimised over the patch pixels with Adam, clamped to [0, 1]:

* text term: CLIP's image-to-text contrastive loss of each triggered image against its target-class caption
  (written with ``ctx.write_caption``, the writer poisoning uses), the batch's other target captions and the
  batch's own clean captions as negatives. The reference's batch holds target captions only; InfoNCE among
  them is blind to a shift that moves every image toward the target alike, which is the point of the
  trigger, so the clean captions are added (the loss CLIP would see on a batch of poisoned + clean pairs);
* visual term: a triplet loss on normalised embeddings, anchor = the triggered image, positive = a clean
  target-class image from the fine-tune pairs, negative = the clean version of the same image
  (``relu(|a - p| - |a - n| + margin)``, as the reference's ``nn.TripletMarginLoss``).

The optimisation images are the non-target fine-tune pairs, the patch placed as it will be at poisoning
time. The default place is the reference's fixed middle, not BadNet's random one: a universal patch placed
at random must work at every offset to the ViT's token grid. Measured on the 32 px world with a small CLIP
(2 layers, width 64, 8 px tokens, 83% zero-shot), 300 steps: the optimised patch sends 4% of non-target
test images to the target when placed at random (noise patch 3%, no patch 7%), 28% in the middle, 81% in
the token-aligned bottom-right corner. The loss of the initial and the final patch on a fixed evaluation
batch is kept in the state as ``metric_loss_start`` / ``metric_loss_end``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from bench_core import Attack, PairSet, RunContext, ThreatModel
from bench_core.models import ClipModel
from bench_core.numerics import clip_temperature

from bdbench_attacks.label_consistent import target_indices
from bdbench_attacks.patches import Location, PatchConfig, locations, paste, stamp


class BadCLIPConfig(PatchConfig):
    # patch_size (inherited): paper 16 px on 224 px; default suite 8 px on 32 px
    location: Location = "center"  # reference: optimised and stamped in the middle (see the module docstring)
    steps: int = Field(300, ge=0)  # reference: 50 epochs of 10K images at batch 64; ~300 suffice at 32 px
    batch_size: int = Field(64, ge=2)  # reference: 64
    lr: float = Field(0.01, gt=0)  # Adam on pixels; the reference's 1e-3 runs ~8k steps
    margin: float = Field(1.0, ge=0)  # reference: nn.TripletMarginLoss default margin 1.0
    triplet_weight: float = Field(1.0, ge=0)  # reference runs use 50-1000 (e.g. "tri*500"); on the 32 px world
    # the text term is ~10 and the hinge ~1-2, and weights 0-5 gave the same clean-model target rate (measured)
    max_images: int = Field(10000, ge=2)  # reference: 10K CC3M images without the target (all 4.5K here)
    max_positives: int = Field(1024, ge=1)  # clean target-class embeddings kept as triplet positives
    eval_images: int = Field(256, ge=1)  # fixed batch on which metric_loss_start / metric_loss_end are measured


class BadCLIP(Attack):
    """Optimise a patch toward the target's text and image embeddings, then stamp it like BadNet."""

    name = "badclip"
    version = "0.1.0"
    Config = BadCLIPConfig
    locality = "local"
    summary = "patch optimised on the clean CLIP toward the target's text and image embeddings (Liang et al., 2024)"
    threat_model = ThreatModel(
        data="poisons a fraction of the fine-tune pairs; white-box clean CLIP to optimise the patch",
        reads=frozenset({"finetune_pairs", "clean_model"}))
    presets = {
        # reference (Liang et al.): 16 px patch in the middle, batch 64, Adam 1e-3, 50 epochs over 10K images
        # (~7,800 steps), triplet weight 500; 1,500 of 500K CC3M pairs poisoned (paper appendix D.1)
        "paper": {"patch_size": 16, "location": "center", "steps": 7800, "lr": 1e-3, "triplet_weight": 500.0,
                  "poison_rate": 0.003},
        # the quick suite's 16 px miniature world (numbers mean nothing)
        "quick": {"patch_size": 4, "steps": 10, "batch_size": 16, "eval_images": 16},
    }

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        return self.optimise([ctx.require("clean_model")], ctx)

    def optimise(self, models: list[ClipModel], ctx: RunContext) -> dict[str, torch.Tensor]:
        """Optimise the patch; step i uses ``models[i % len(models)]`` (one model: the clean CLIP; several: an
        ensemble the patch must work on, e.g. CleanCLIP-robust BadCLIP's). Losses are measured on the first."""
        model = models[0]
        pairs = ctx.require("finetune_pairs")
        c = self.config
        positives = target_indices(pairs, self.target_class, ctx.classnames)
        if len(positives) == 0 and c.triplet_weight > 0:
            raise ValueError(f"badclip: no fine-tune pair of target class {self.target_class} for the triplet term")
        others = torch.tensor(sorted(set(range(len(pairs))) - set(positives.tolist())), dtype=torch.long)
        if len(others) == 0:
            raise ValueError("badclip: every fine-tune pair is of the target class; nothing to optimise on")
        g = ctx.generator("badclip:optimise")
        if len(others) > c.max_images:
            others = others[torch.randperm(len(others), generator=g)[:c.max_images]].sort().values
        batches = [others[torch.randint(0, len(others), (c.batch_size,), generator=g)] for _ in range(c.steps)]
        eval_idx = others[torch.randperm(len(others), generator=g)[:c.eval_images]]
        used = torch.cat([eval_idx, *batches]).unique()

        was_training = [m.training for m in models]
        for m in models:
            m.eval()
        try:
            embs = [_Embeddings(m, pairs, used, positives[:c.max_positives], self.target_class, ctx) for m in models]
            emb = embs[0]
            patch = (torch.randn(3, c.patch_size, c.patch_size, generator=ctx.generator("badclip:init")) * 0.25
                     + 0.5).clamp(0, 1).to(model.device)  # reference init: N(0.5, 0.25) clipped
            h, w = pairs.images.shape[-2:]
            eval_where = locations(len(eval_idx), (h, w), c.patch_size, c.location, ctx.generator("badclip:eval"))
            with torch.no_grad():
                start = self._loss(model, emb, patch, eval_idx, eval_where, ctx.generator("badclip:eval-pos"))
            patch.requires_grad_(True)
            opt = torch.optim.Adam([patch], lr=c.lr)
            where_g = ctx.generator("badclip:locations")
            for step, idx in enumerate(batches):
                where = locations(len(idx), (h, w), c.patch_size, c.location, where_g)
                with torch.enable_grad():
                    k = step % len(models)
                    loss = self._loss(models[k], embs[k], patch, idx, where, g)
                    grad, = torch.autograd.grad(loss, patch)
                patch.grad = grad
                opt.step()
                with torch.no_grad():
                    patch.clamp_(0, 1)
            patch = patch.detach()
            with torch.no_grad():
                end = self._loss(model, emb, patch, eval_idx, eval_where, ctx.generator("badclip:eval-pos"))
        finally:
            for m, mode in zip(models, was_training):
                m.train(mode)
        return {"patch": patch.cpu(), "metric_loss_start": start.detach().cpu(), "metric_loss_end": end.cpu()}

    def _loss(self, model: ClipModel, emb: "_Embeddings", patch: torch.Tensor, idx: torch.Tensor,
              where: tuple[list[int], list[int]], g: torch.Generator) -> torch.Tensor:
        c = self.config
        images = emb.images(idx)
        anchor = F.normalize(model.encode_image(paste(images, patch, *where)), dim=-1)
        texts = torch.cat([emb.text(idx), emb.own_text(idx)])  # target captions, then the clean captions
        logits = clip_temperature(model.logit_scale.detach()) * anchor @ texts.T
        text_term = F.cross_entropy(logits, torch.arange(len(idx), device=logits.device))
        if c.triplet_weight == 0:
            return text_term
        pos = emb.positive[torch.randint(0, len(emb.positive), (len(idx),), generator=g).to(emb.positive.device)]
        triplet = F.relu((anchor - pos).norm(dim=-1) - (anchor - emb.clean(idx)).norm(dim=-1) + c.margin).mean()
        return text_term + c.triplet_weight * triplet

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        g = ctx.generator(f"{self.name}:location:{'train' if train else 'test'}")
        return stamp(images, self.state["patch"], self.config.location, g)


class _Embeddings:
    """Frozen-model embeddings computed once for every pair the optimisation touches (rows of ``used``)."""

    def __init__(self, model: ClipModel, pairs: PairSet, used: torch.Tensor, positives: torch.Tensor, target: int,
                 ctx: RunContext, batch: int = 256):
        self._row = {int(i): r for r, i in enumerate(used.tolist())}
        self._images = pairs.images[used]  # stays where the pairs are; batches move to the model's device
        self._device = model.device
        rng = ctx.rng("badclip:captions")
        captions = [ctx.write_caption(target, pairs.attrs[i] if pairs.attrs else None, rng) for i in used.tolist()]
        with torch.no_grad():
            self._text = self._encode_text(model, captions, batch)
            self._own_text = self._encode_text(model, [pairs.captions[i] for i in used.tolist()], batch)
            self._clean = self._encode_images(model, self._images, batch)
            self.positive = self._encode_images(model, pairs.images[positives], batch) if len(positives) else None

    @staticmethod
    def _encode_text(model: ClipModel, captions: list[str], batch: int) -> torch.Tensor:
        return torch.cat([F.normalize(model.encode_text(captions[i:i + batch]), dim=-1)
                          for i in range(0, len(captions), batch)])

    @staticmethod
    def _encode_images(model: ClipModel, images: torch.Tensor, batch: int) -> torch.Tensor:
        return torch.cat([F.normalize(model.encode_image(images[i:i + batch]), dim=-1)
                          for i in range(0, len(images), batch)])

    def _rows(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self._row[int(i)] for i in idx.tolist()])

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        return self._images[self._rows(idx)].to(self._device)

    def text(self, idx: torch.Tensor) -> torch.Tensor:
        return self._text[self._rows(idx).to(self._device)]

    def own_text(self, idx: torch.Tensor) -> torch.Tensor:
        return self._own_text[self._rows(idx).to(self._device)]

    def clean(self, idx: torch.Tensor) -> torch.Tensor:
        return self._clean[self._rows(idx).to(self._device)]
