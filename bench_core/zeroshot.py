"""Zero-shot classification with template-averaged class prompts, and the Classifier contract.

A :class:`Classifier` maps [0, 1] images to class logits. The plain :class:`ZeroShotClassifier` is what
attacks are evaluated against; inference-stage defenses wrap one Classifier into another, so defenses chain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F

from bench_core.models import ClipModel
from bench_core.numerics import clip_temperature, full_precision


@runtime_checkable
class Classifier(Protocol):
    """Images (N, 3, H, W) in [0, 1] -> logits (N, K). ``model`` is the CLIP underneath (for wrappers)."""

    model: ClipModel
    class_weights: torch.Tensor

    def logits(self, images: torch.Tensor) -> torch.Tensor: ...


def class_embeddings(model: ClipModel, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """(K, D) unit vectors: for each class, the normalised mean of its normalised prompt embeddings."""
    with torch.no_grad():
        rows = []
        for name in classnames:
            emb = F.normalize(model.encode_text([t.format(name) for t in templates]), dim=-1)
            rows.append(F.normalize(emb.mean(0), dim=-1))
    return torch.stack(rows)


@dataclass(frozen=True)
class ZeroShotClassifier:
    """logits = output_map(logit_scale * cos(embedder(input_transform(images)), class embeddings)).

    Inference-stage defenses chain by returning a copy with one stage swapped (:meth:`replace`): Decomp-Rep
    swaps the ``embedder`` for a repaired decomposition, PDB sets ``input_transform`` (stamp its trigger) and
    ``output_map`` (undo its label map). ``None`` means the plain stage.
    """

    model: ClipModel
    class_weights: torch.Tensor
    embedder: Callable[[torch.Tensor], torch.Tensor] | None = None
    input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    output_map: Callable[[torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def build(cls, model: ClipModel, classnames: Sequence[str], templates: Sequence[str]) -> "ZeroShotClassifier":
        return cls(model, class_embeddings(model, classnames, templates).to(model.device))

    def replace(self, **changes) -> "ZeroShotClassifier":
        return dataclasses.replace(self, **changes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised embeddings of the (already input-transformed) images."""
        images = images.to(self.model.device)
        return self.embedder(images) if self.embedder is not None else self.model.encode_image(images)

    def logits_from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """fp32 logits even under bf16 autocast (see :mod:`bench_core.numerics`)."""
        with full_precision(embeddings.device):
            scale = clip_temperature(self.model.logit_scale)
            return scale * F.normalize(embeddings.float(), dim=-1) @ self.class_weights.float().T

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings after the input transform and any embedder swap (what retrieval compares)."""
        if self.input_transform is not None:
            images = self.input_transform(images)
        return self.embed(images)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        out = self.logits_from_embeddings(self.image_embeddings(images))
        return self.output_map(out) if self.output_map is not None else out


@torch.inference_mode()
def batched_logits(classifier: Classifier, images, batch_size: int = 512, loader_workers: int = 0) -> torch.Tensor:
    """Run ``classifier.logits`` in batches; returns CPU logits. ``images``: a tensor or a lazy image column,
    decoded in ``loader_workers`` DataLoader processes (0: in this process)."""
    from bench_core.data.images import batches

    rows = [list(range(i, min(i + batch_size, len(images)))) for i in range(0, len(images), batch_size)]
    out = [classifier.logits(x).float().cpu() for x in batches(images, rows, workers=loader_workers)]
    return torch.cat(out) if out else torch.empty(0, len(classifier.class_weights))
