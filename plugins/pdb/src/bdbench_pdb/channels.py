"""Transmission channels an input may pass through after the defender stamps Δ1 (the critique's question 1).

Each channel maps (N, 3, H, W) float images to images of the same shape and dtype on the CPU.

* :func:`quantize_8bit` — what any uint8 storage does: clip to [0, 1], round to 1/255.
* :func:`jpeg` — PIL JPEG at a quality (4:2:0 chroma subsampling, PIL's default): clips and quantises too.
* :func:`resize_down_up` — bilinear (antialiased) down-scaling by ``factor`` and back, in float: it blurs
  the trigger but does not clip it, so it isolates geometry from quantisation.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to 8 bits: an out-of-range trigger value ends at 0 or 1."""
    return ((images.detach().cpu().float().clamp(0, 1) * 255).round() / 255).to(images.dtype)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode every image as a JPEG of ``quality`` (1..95) with PIL and decode it back to [0, 1] floats."""
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality {quality} outside 1..95")
    out = []
    for image in images.detach().cpu().float():
        buf = io.BytesIO()
        Image.fromarray(_to_uint8(image)).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        decoded = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255
        out.append(torch.from_numpy(decoded).permute(2, 0, 1))
    if not out:
        return images.detach().cpu().clone()
    return torch.stack(out).to(images.dtype)


def resize_down_up(images: torch.Tensor, factor: float = 0.5) -> torch.Tensor:
    """Down-scale by ``factor`` (bilinear, antialiased) and back to the input size, in float (no clipping)."""
    if not 0 < factor < 1:
        raise ValueError(f"resize factor {factor} must be in (0, 1)")
    x = images.detach().cpu().float()
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="bilinear",
                          antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).to(images.dtype)
