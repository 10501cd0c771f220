"""Per-image deterministic randomness for the random ablation rows.

A wrapped classifier sees images in batches whose composition the runner chooses; for a random edit to be a
function of the image (and the run's seed) only, each image gets its own generator, seeded from a hash of a
base seed (from ``ctx.generator(salt)``) and the image's values.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import torch

Seeds = list[int]

FINGERPRINT_VALUES = 4096


def image_seeds(images: torch.Tensor, base: int) -> Seeds:
    """One 64-bit seed per image: a hash of ``base`` and the float32 bytes of up to 4096 evenly spaced values
    of the image (batch-independent; cheap at 224 px, and two images sharing draws would be harmless)."""
    flat = images.detach().flatten(1)
    if flat.shape[1] > FINGERPRINT_VALUES:
        flat = flat[:, torch.linspace(0, flat.shape[1] - 1, FINGERPRINT_VALUES, device=flat.device).long()]
    rows = flat.to("cpu", torch.float32).contiguous().numpy()
    prefix = base.to_bytes(8, "little")
    return [int.from_bytes(hashlib.blake2b(prefix + row.tobytes(), digest_size=8).digest(), "little")
            for row in rows]


def position_seeds(n: int, base: int) -> Seeds:
    """Seeds for a decomposition edited without its images (direct ``edit`` calls): keyed by row index."""
    prefix = base.to_bytes(8, "little")
    return [int.from_bytes(hashlib.blake2b(prefix + i.to_bytes(8, "little"), digest_size=8).digest(), "little")
            for i in range(n)]


def per_image_draw(seeds: Seeds, draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
    """Stack ``draw(generator)`` over images, one CPU generator per image seed."""
    return torch.stack([draw(torch.Generator().manual_seed(s)) for s in seeds])
