"""CleanCLIP (Bansal et al., ICCV 2023): fine-tune a possibly backdoored CLIP on clean pairs with the
multimodal contrastive loss plus unimodal self-supervised losses, weights 1:1.

Loss per batch (as the reference ``src/train.py`` with ``--inmodal``)::

    L = clip_loss(img, txt) + w * (CE(s * img @ aug_img.T, I) + CE(s * txt @ aug_txt.T, I)) / 2

with unit-normalised embeddings, ``s`` the model's logit scale (exp, capped at 100) and ``I`` the diagonal:
each image must pick its own augmented view among the batch's augmented images, and each caption its own
augmented caption. ``w`` = 1 (the paper's 1:1). The contrastive term and the training loop are bdbench's
:func:`~bench_core.training.train_contrastive` (which already random-shifts the images it is given; the
augmented view is drawn from that shifted image).

Data: the clean held-out pairs (``RunContext.heldout``), disjoint from the poisoned fine-tune pairs and from
the test split.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from bench_core import PluginConfig, PostTrainDefense, RunContext, ThreatModel
from bench_core.models import ClipModel
from bench_core.training import TrainConfig, contrastive_logits, train_contrastive

from bdbench_cleanclip.augment import augment_caption, augment_images


class CleanCLIPConfig(PluginConfig):
    # Optimiser. The paper (appendix D.2, ViT-B/32 pretrained on 400M pairs, 10k CC3M pairs) uses lr 5e-6
    # (3e-6 for Blended and ISSBA), i.e. half the poisoning fine-tune's 1e-5; see ``presets["paper"]``.
    # The default suite's tiny from-scratch CLIP is fine-tuned (poisoned) at lr 1e-3, so the same ratio gives
    # 5e-4. Its held-out pairs come from the pretraining distribution, so a moderate lr does not cause the
    # forgetting that CC3M fine-tuning causes on OpenAI CLIP; 10 epochs x 1,000 pairs / 64 = 150 steps,
    # fewer than the poisoned fine-tune's 190, keeps CACC (the paper's requirement) while re-aligning.
    epochs: int = Field(10, ge=0)  # paper D.2 and reference README: 10 epochs
    lr: float = Field(5e-4, gt=0)  # default suite: half the tiny model's poisoning lr (1e-3), as the paper's ratio
    batch_size: int = Field(64, ge=2)  # paper D.2 and reference README: 64
    weight_decay: float = Field(0.1, ge=0)  # reference code's default (inherited from CyCLIP)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)  # reference README: 50 of ~1,560 steps (3%); bdbench's 5%
    inmodal_weight: float = Field(1.0, ge=0)  # paper: multimodal and unimodal losses weighted 1:1
    # Augmentations (own, not the reference's AutoAugment / WordNet EDA; see augment.py).
    crop_scale: tuple[float, float] = (0.5, 1.0)  # area fraction of the random resized crop (SimCLR-like, milder)
    jitter: float = Field(0.4, ge=0, le=1)  # brightness / contrast / saturation strength (SimCLR's 0.8 halved)
    grayscale_p: float = Field(0.2, ge=0, le=1)  # SimCLR's random-grayscale probability
    text_alpha: float = Field(0.1, gt=0, le=1)  # EDA's alpha: fraction of words changed (EDA paper default 0.1)

    @field_validator("crop_scale")
    @classmethod
    def _check_scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {v}")
        return v


class CleanCLIP(PostTrainDefense):
    """Fine-tune in place on ``ctx.heldout`` with contrastive + unimodal self-supervised losses."""

    name = "cleanclip"
    version = "0.1.0"
    Config = CleanCLIPConfig
    summary = "fine-tune on clean pairs with multimodal + unimodal self-supervised losses (Bansal et al., 2023)"
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        data="clean pairs: the held-out split (1,000 in the default suite), disjoint from fine-tune and test",
        knowledge="none",
        reads=frozenset({"heldout"}))
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # Paper appendix D.2 (ViT-B/32, 10k CC3M pairs): lr 5e-6 for BadNet, Blended and BadCLIP on ImageNet-1K;
        # "paper_3e-6" is the 3e-6 the appendix lists for Blended and ISSBA.
        "paper": {"epochs": 10, "batch_size": 64, "lr": 5e-6},
        "paper_3e-6": {"epochs": 10, "batch_size": 64, "lr": 3e-6},
    }

    def train_config(self) -> TrainConfig:
        c = self.config
        return TrainConfig(epochs=c.epochs, lr=c.lr, batch_size=c.batch_size, weight_decay=c.weight_decay,
                           warmup_fraction=c.warmup_fraction, augment=True)

    def repair(self, model: ClipModel, ctx: RunContext) -> dict[str, float]:
        """Fine-tune ``model`` in place on the held-out pairs; returns the loop's stats plus the last unimodal
        losses and the number of pairs."""
        pairs = ctx.require("heldout")
        if len(pairs) < 2:
            raise ValueError(f"CleanCLIP needs at least 2 clean pairs, got {len(pairs)}")
        extra = UnimodalLoss(model, list(pairs.captions), ctx, self.config)
        stats = train_contrastive(model, pairs.images, list(pairs.captions), self.train_config(), seed=ctx.seed,
                                  extra_loss=extra, desc="cleanclip")
        stats.update({"n_pairs": float(len(pairs)), "inmodal_image_loss": extra.last["image"],
                      "inmodal_text_loss": extra.last["text"]})
        return stats


def inmodal_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """InfoNCE of each row of ``a`` against the rows of ``b`` (its own row is the positive), as the reference;
    in fp32 even under the training loop's bf16 autocast."""
    logits = contrastive_logits(a, b, logit_scale)
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


class UnimodalLoss:
    """The ``extra_loss`` handed to ``train_contrastive``: ``w * (image-vs-augmented + text-vs-augmented) / 2``.

    The loop hands over token rows, not captions: rows are mapped back to the caption strings they were
    tokenized from, then augmented. Image and caption augmentations draw from streams seeded by the run's
    seed, so a repair is reproducible.
    """

    def __init__(self, model: ClipModel, captions: list[str], ctx: RunContext, config: CleanCLIPConfig):
        self.config = config
        tokens = model.tokenize(captions).cpu()
        self.caption_of: dict[bytes, str] = {row.numpy().tobytes(): c for row, c in zip(tokens, captions)}
        self.generator = ctx.generator("cleanclip:image_augment")
        self.rng = ctx.rng("cleanclip:text_augment")
        self.last = {"image": float("nan"), "text": float("nan")}

    def augmented_tokens(self, model: ClipModel, tokens: torch.Tensor) -> torch.Tensor:
        captions = [self.caption_of[row.numpy().tobytes()] for row in tokens.cpu()]
        return model.tokenize([augment_caption(c, self.rng, self.config.text_alpha) for c in captions])

    def __call__(self, model: ClipModel, images: torch.Tensor, tokens: torch.Tensor,
                 image_features: torch.Tensor, text_features: torch.Tensor, rows: torch.Tensor | None = None
                 ) -> torch.Tensor:
        c = self.config
        aug_images = augment_images(images, self.generator, crop_scale=c.crop_scale, jitter=c.jitter,
                                    grayscale_p=c.grayscale_p)
        aug_image_features = model.encode_image(aug_images)
        aug_text_features = model.encode_text(self.augmented_tokens(model, tokens).to(tokens.device))
        image_loss = inmodal_loss(image_features, aug_image_features, model.logit_scale)
        text_loss = inmodal_loss(text_features, aug_text_features, model.logit_scale)
        self.last = {"image": float(image_loss.detach()), "text": float(text_loss.detach())}
        return c.inmodal_weight * (image_loss + text_loss) / 2

