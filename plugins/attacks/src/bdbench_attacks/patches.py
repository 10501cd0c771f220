"""Patch triggers shared by BadNet, Label-Consistent and BadCLIP: where a patch goes and how it is stamped.

Locations are drawn from a generator the caller seeds per attack and per phase (poisoning vs test), so
the same seed stamps the same places on every run. :func:`paste` is differentiable in the patch (BadCLIP
optimises through it); :func:`stamp` is the in-place, no-grad version used for poisoning and testing.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from bench_core import AttackConfig

Location = Literal["random", "bottom_right", "center", "four_corners"]


class PatchConfig(AttackConfig):
    """Settings every patch attack shares."""

    patch_size: int = Field(8, ge=1)  # paper: 16 px on 224 px (0.5% of the area); default suite: 8 px on 32 px
    location: Location = "random"  # paper (BackdoorBox BadNet): a random location per image
    # "four_corners" stamps the patch in every corner (Turner et al. 2019 §4.3; BackdoorBox's LC example)


def locations(n: int, size: tuple[int, int], patch_size: int, location: Location,
              generator: torch.Generator) -> tuple[list[int], list[int]]:
    """Top-left corners (ys, xs) of ``n`` patches of side ``patch_size`` on ``size`` = (H, W) images.

    Only ``random`` consumes the generator (two draws: all ys, then all xs).
    """
    h, w = size
    s = patch_size
    if s > min(h, w):
        raise ValueError(f"patch_size {s} exceeds the image size {h}x{w}")
    if location == "bottom_right":
        return [h - s] * n, [w - s] * n
    if location == "center":
        return [(h - s) // 2] * n, [(w - s) // 2] * n
    if location == "four_corners":
        raise ValueError("four_corners places four patches per image: use stamp(), not locations()")
    ys = torch.randint(0, h - s + 1, (n,), generator=generator).tolist()
    xs = torch.randint(0, w - s + 1, (n,), generator=generator).tolist()
    return ys, xs


def stamp(images: torch.Tensor, patch: torch.Tensor, location: Location, generator: torch.Generator) -> torch.Tensor:
    """A copy of ``images`` (N, C, H, W) with ``patch`` (C, s, s) pasted at ``location``."""
    patch = patch.to(images.device, images.dtype)
    s = patch.shape[-1]
    out = images.clone()
    if location == "four_corners":
        h, w = images.shape[-2:]
        if 2 * s > min(h, w):
            raise ValueError(f"four_corners: patch_size {s} overlaps itself on {h}x{w} images (at most {min(h, w) // 2})")
        for y, x in ((0, 0), (0, w - s), (h - s, 0), (h - s, w - s)):
            out[:, :, y:y + s, x:x + s] = patch
        return out
    ys, xs = locations(len(images), images.shape[-2:], s, location, generator)
    for i, (y, x) in enumerate(zip(ys, xs)):
        out[i, :, y:y + s, x:x + s] = patch
    return out


def paste(images: torch.Tensor, patch: torch.Tensor, ys: list[int], xs: list[int]) -> torch.Tensor:
    """``images`` with ``patch`` pasted at the given corners; differentiable in ``patch`` (and ``images``)."""
    s = patch.shape[-1]
    canvas = torch.zeros_like(images)
    mask = torch.zeros_like(images)
    for i, (y, x) in enumerate(zip(ys, xs)):
        canvas[i, :, y:y + s, x:x + s] = patch
        mask[i, :, y:y + s, x:x + s] = 1
    return images * (1 - mask) + canvas
