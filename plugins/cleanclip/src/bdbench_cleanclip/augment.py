"""The two augmentations of CleanCLIP's unimodal losses, written for bdbench: images in torch, captions in Python.

The reference code augments images with torchvision's AutoAugment on the PIL image and captions with EDA
(Wei & Zou, 2019: WordNet synonym replacement, random insertion, swap and deletion). Here:

* :func:`augment_images` — a batched, seeded torch pipeline (random resized crop, colour jitter, random
  grayscale) that is cheap on a CPU. Contract: same shape, dtype and device as the input; values in [0, 1];
  the same generator state gives the same output.
* :func:`augment_caption` — one synonym-free EDA operation (random deletion, swap or insertion of a word
  already in the caption). Contract: deterministic given the ``random.Random`` state; a caption with at least
  two distinct words always changes; a shorter one is returned unchanged.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights (what torchvision's rgb_to_grayscale uses)


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def _gray(images: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True)


def random_resized_crop(images: torch.Tensor, generator: torch.Generator,
                        scale: tuple[float, float]) -> torch.Tensor:
    """Crop a square of ``scale`` (area fraction) at a random place and resize it back (bilinear)."""
    n = len(images)
    side = _uniform(n, scale[0], scale[1], generator).sqrt()  # side fraction of the crop
    tx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - side)  # centre offset in [-1, 1] coordinates
    ty = (torch.rand(n, generator=generator) * 2 - 1) * (1 - side)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = side
    theta[:, 1, 1] = side
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(images: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation factors drawn from [1 - strength, 1 + strength], per image."""
    n = len(images)
    view = (n, 1, 1, 1)
    lo, hi = max(0.0, 1 - strength), 1 + strength
    b = _uniform(n, lo, hi, generator).view(view).to(images.device, images.dtype)
    c = _uniform(n, lo, hi, generator).view(view).to(images.device, images.dtype)
    s = _uniform(n, lo, hi, generator).view(view).to(images.device, images.dtype)
    out = (images * b).clamp(0, 1)
    mean = _gray(out).mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * c + mean).clamp(0, 1)
    gray = _gray(out)
    return ((out - gray) * s + gray).clamp(0, 1)


def random_grayscale(images: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    pick = (torch.rand(len(images), generator=generator) < p).view(-1, 1, 1, 1).to(images.device)
    return torch.where(pick, _gray(images).expand_as(images), images)


def augment_images(images: torch.Tensor, generator: torch.Generator, *, crop_scale: tuple[float, float] = (0.5, 1.0),
                   jitter: float = 0.4, grayscale_p: float = 0.2) -> torch.Tensor:
    """The augmented view of a batch of [0, 1] images (N, 3, H, W); see the module docstring for the contract."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    if len(images) == 0:
        return images.clone()
    out = random_resized_crop(images, generator, crop_scale)
    out = color_jitter(out, generator, jitter)
    out = random_grayscale(out, generator, grayscale_p)
    return out.clamp(0, 1).to(images.dtype)


# --- captions -----------------------------------------------------------------------------------------------

def _delete(words: list[str], rng: random.Random, p: float) -> list[str]:
    kept = [w for w in words if rng.random() >= p]
    if len(kept) == len(words):  # always change: drop one word
        drop = rng.randrange(len(words))
        kept = words[:drop] + words[drop + 1:]
    return kept or [rng.choice(words)]


def _swap(words: list[str], rng: random.Random, n: int) -> list[str]:
    out = list(words)
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    if out == words:  # swaps undid each other or hit equal words: swap two different words
        pairs = [(i, j) for i in range(len(words)) for j in range(i + 1, len(words)) if words[i] != words[j]]
        i, j = rng.choice(pairs)
        out = list(words)
        out[i], out[j] = out[j], out[i]
    return out


def _insert(words: list[str], rng: random.Random, n: int) -> list[str]:
    """EDA's random insertion without a thesaurus: insert copies of words already in the caption."""
    out = list(words)
    for _ in range(n):
        out.insert(rng.randrange(len(out) + 1), rng.choice(words))
    return out


def augment_caption(caption: str, rng: random.Random, alpha: float = 0.1) -> str:
    """One EDA-style operation (deletion with probability ``alpha`` per word, or ``max(1, alpha * n)`` swaps or
    insertions), chosen uniformly; see the module docstring for the contract."""
    words = caption.split()
    if len(set(words)) < 2:
        return caption
    n = max(1, round(alpha * len(words)))
    op = rng.randrange(3)
    if op == 0:
        out = _delete(words, rng, alpha)
    elif op == 1:
        out = _swap(words, rng, n)
    else:
        out = _insert(words, rng, n)
    return " ".join(out)
