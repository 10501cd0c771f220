"""The ImageNet-C common corruptions (Hendrycks & Dietterich, ICLR 2019) in batched torch, for TeCo.

Contract: every corruption is ``fn(images, severity, generator) -> images``. ``images`` is (N, 3, H, W) float in
[0, 1]; the result is a new tensor of the same shape, dtype and device, in [0, 1]; ``severity`` is 1..5. All
randomness comes from ``generator`` (drawn on ``generator.device``, then moved), so the same generator state
gives the same output. Images are corrupted independently (each gets its own noise, angle, texture).

Parameter tables are ImageNet-C's (``make_imagenet_c.py``), adapted as follows:

- spatial parameters given in pixels for 224 px images (motion-blur radius and sigma, also inside snow) are
  scaled by H / 224, so a 32 px image is blurred as much, relative to its size, as a 224 px one (at 16 px,
  severity 1 is then nearly no blur); snow's flake zoom stays in pixels, so flakes are relatively larger on
  small images;
- fog's plasma fractal and the frost texture are made at the image's own size (octave noise, see
  :func:`fractal_noise`), so their structure is relative to the image too;
- elastic transform uses the table of ``imagecorruptions`` (Michaelis et al., 2019; the package TeCo's reference
  code calls), whose displacement is relative to the image size and grows with severity; ImageNet-C's own
  table adds a random affine warp that shrinks from 0.2 H at severity 2 to 0.02 H at 3, so its distortion is
  not monotone in severity. Below about 100 px the smoothing sigma (0.01 H) is under a pixel and the warp is
  close to per-pixel jitter, as in TeCo's CIFAR-10 runs;
- frost: ImageNet-C blends in crops of six photographs of frost; we synthesise a frost-like texture
  procedurally instead (ridged multi-octave noise, tinted ice-blue; see :func:`frost_texture`), so no image
  files are needed; its look only approximates the photographs;
- images stay float between steps: only jpeg quantises to 8 bits (PIL round trip, one image at a time).
"""

from __future__ import annotations

import io
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
MAX_SEVERITY = 5
_REFERENCE_SIZE = 224  # ImageNet-C's image size: its pixel-unit parameters are for this size
_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as OpenCV's RGB2GRAY used by ImageNet-C's snow


# --- helpers ----------------------------------------------------------------------------------------------

def _rand(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randn(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def _level(table: tuple, severity: int):
    if not 1 <= severity <= len(table):
        raise ValueError(f"severity must be in 1..{len(table)}, got {severity}")
    return table[severity - 1]


def _pixels(value: float, size: int) -> float:
    """A length given in pixels at 224 px, scaled to an image of side ``size``."""
    return value * size / _REFERENCE_SIZE


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflect padding (skimage's ``gaussian(mode='reflect')``)."""
    radius = max(1, math.ceil(truncate * sigma))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _base_grid(n: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """(n, h, w, 2) grid_sample coordinates (x, y) of the pixel centres (align_corners=False)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * 2 / h - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * 2 / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).expand(n, h, w, 2)


def _displace(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, padding: str) -> torch.Tensor:
    """Bilinearly sample ``x`` at (pixel + (dx, dy)); dx, dy in pixels, broadcastable to (N, H, W)."""
    n, _, h, w = x.shape
    grid = _base_grid(n, h, w, x.device).clone()
    grid[..., 0] += dx.to(grid.dtype) * 2 / w
    grid[..., 1] += dy.to(grid.dtype) * 2 / h
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode=padding, align_corners=False).to(x.dtype)


def motion_blur_kernel(x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """One-sided motion blur (ImageMagick's / imagecorruptions' ``_motion_blur``): the weighted sum of copies of
    ``x`` shifted by i = 0..2r pixels along each image's angle (degrees), weights exp(-i^2 / 2 sigma^2)."""
    width = 2 * max(1, round(radius)) + 1
    weights = torch.exp(-torch.arange(width, dtype=torch.float32) ** 2 / (2 * max(sigma, 1e-3) ** 2))
    weights = weights / weights.sum()
    rad = torch.deg2rad(angles.float()).to(x.device)
    out = torch.zeros_like(x)
    for i, wt in enumerate(weights.tolist()):
        if wt < 1e-6:  # the rest of the Gaussian tail contributes nothing visible
            break
        shift_x = (i * torch.cos(rad)).view(-1, 1, 1)
        shift_y = (i * torch.sin(rad)).view(-1, 1, 1)
        out = out + wt * (x if i == 0 else _displace(x, shift_x, shift_y, "border"))
    return out


def fractal_noise(n: int, h: int, w: int, decay: float, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """(n, 1, h, w) fractal noise in [0, 1], a stand-in for ImageNet-C's diamond-square ``plasma_fractal``.

    Octaves at resolutions 2, 4, ... up to the next power of two >= max(h, w), each upsampled bilinearly; the
    amplitude falls by ``decay ** 2`` per octave, as the diamond-square displacement (wibble * U(-wibble,
    wibble), wibble divided by ``wibbledecay`` per level) does. Each map is min-max normalised.
    """
    size = 1 << max(1, math.ceil(math.log2(max(h, w))))
    total = torch.zeros(n, 1, size, size, device=device)
    res, amp = 2, 1.0
    while res <= size:
        octave = _rand(generator, (n, 1, res, res), device) * 2 - 1
        total += amp * F.interpolate(octave, size=(size, size), mode="bilinear", align_corners=False)
        res, amp = res * 2, amp / decay ** 2
    total = total[..., :h, :w]
    lo = total.amin(dim=(2, 3), keepdim=True)
    hi = total.amax(dim=(2, 3), keepdim=True)
    return (total - lo) / (hi - lo).clamp_min(1e-12)


def frost_texture(n: int, h: int, w: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n, 3, h, w) procedural frost in [0, 1]: thin bright crystal veins (ridges of fine fractal noise) over a
    dim cloudy haze, tinted ice-blue. Synthesised instead of ImageNet-C's frost photographs (no files)."""
    haze = fractal_noise(n, h, w, 1.6, generator, device)
    ridged = fractal_noise(n, h, w, 1.2, generator, device)
    veins = (1 - (2 * ridged - 1).abs()).pow(4)  # 1 on the zero-crossings of the noise: a web of thin lines
    intensity = (0.35 * haze + 0.75 * veins).clamp(0, 1)
    tint = torch.tensor([0.82, 0.9, 1.0], device=device).view(1, 3, 1, 1)
    return intensity * tint


def _clip(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).to(like.dtype)


# --- the corruptions --------------------------------------------------------------------------------------

def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((0.08, 0.12, 0.18, 0.26, 0.38), severity)  # ImageNet-C: noise std
    return _clip(x + c * _randn(generator, tuple(x.shape), x.device), x)


def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((60, 25, 12, 5, 3), severity)  # ImageNet-C: photons per unit intensity
    counts = torch.poisson(x.float().to(generator.device) * c, generator=generator).to(x.device)
    return _clip(counts / c, x)


def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((0.03, 0.06, 0.09, 0.17, 0.27), severity)  # ImageNet-C: salt-and-pepper amount per value
    hit = _rand(generator, tuple(x.shape), x.device) < c
    salt = (_rand(generator, tuple(x.shape), x.device) < 0.5).to(x.dtype)
    return _clip(torch.where(hit, salt, x), x)


def motion_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    radius, sigma = _level(((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)), severity)  # ImageNet-C, px @224
    angles = _rand(generator, (len(x),), x.device) * 90 - 45  # ImageNet-C: U(-45, 45) degrees
    size = x.shape[-1]
    return _clip(motion_blur_kernel(x, _pixels(radius, size), _pixels(sigma, size), angles), x)


def snow(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    # ImageNet-C: (flake mean, flake std, zoom, threshold, blur radius px@224, blur sigma px@224, image weight)
    loc, scale, zoom, threshold, radius, sigma, keep = _level(
        ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
         (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)), severity)
    n, _, h, w = x.shape
    layer = loc + scale * _randn(generator, (n, 1, h, w), x.device)
    ch, cw = math.ceil(h / zoom), math.ceil(w / zoom)  # ImageNet-C's clipped_zoom: enlarge the centre
    top, left = (h - ch) // 2, (w - cw) // 2
    layer = F.interpolate(layer[..., top:top + ch, left:left + cw], size=(h, w), mode="bilinear",
                          align_corners=False)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    angles = _rand(generator, (n,), x.device) * 90 - 135  # ImageNet-C: U(-135, -45) degrees
    layer = motion_blur_kernel(layer, _pixels(radius, w), _pixels(sigma, w), angles)
    gray = sum(wt * x[:, i:i + 1] for i, wt in enumerate(_GRAY))
    whitened = keep * x + (1 - keep) * torch.maximum(x, gray * 1.5 + 0.5)
    return _clip(whitened + layer + layer.flip(-1, -2), x)


def frost(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    keep, amount = _level(((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)), severity)  # ImageNet-C
    n, _, h, w = x.shape
    return _clip(keep * x + amount * frost_texture(n, h, w, generator, x.device), x)


def fog(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    amount, decay = _level(((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)), severity)  # ImageNet-C
    n, _, h, w = x.shape
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    fogged = x + amount * fractal_noise(n, h, w, decay, generator, x.device)
    return _clip(fogged * max_val / (max_val + amount), x)


def brightness(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((0.1, 0.2, 0.3, 0.4, 0.5), severity)  # ImageNet-C: added to the HSV value channel
    # Raising V with hue and saturation fixed scales RGB by V'/V (RGB is linear in V for fixed H, S);
    # black pixels (V = 0, no hue) become grey V'.
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(max=1)
    scaled = x * (v_new / v.clamp_min(1e-12))
    return _clip(torch.where(v > 0, scaled, v_new.expand_as(x)), x)


def contrast(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((0.4, 0.3, 0.2, 0.1, 0.05), severity)  # ImageNet-C: contrast factor about the channel means
    means = x.mean(dim=(2, 3), keepdim=True)
    return _clip((x - means) * c + means, x)


def elastic_transform(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    # imagecorruptions: displacement = alpha * Gaussian-smoothed U(-0.005 H, 0.005 H), smoothing sigma 0.01 H
    alpha = _level((250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12), severity)
    n, _, h, w = x.shape
    max_d, sigma = 0.005 * h, 0.01 * h
    field = (_rand(generator, (n, 2, h, w), x.device) * 2 - 1) * max_d
    field = gaussian_blur(field, sigma) * alpha
    return _clip(_displace(x, field[:, 0], field[:, 1], "reflection"), x)


def _box_resize_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """(n_out, n_in) weights of PIL's BOX resampling along one axis: output pixel j averages the input pixels
    whose centres fall in its box, of half-width max(n_in / n_out, 1) / 2 around its centre (PIL's
    ``box_filter``, evaluated at input centres); upsampling thus repeats pixels."""
    scale = n_in / n_out
    centres = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale
    u = (torch.arange(n_in, dtype=torch.float64)[None] + 0.5 - centres[:, None]) / max(scale, 1.0)
    m = ((u > -0.5) & (u <= 0.5)).double()
    return (m / m.sum(dim=1, keepdim=True)).float().to(device)


def _box_resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    rows = _box_resize_matrix(x.shape[-2], h, x.device)
    cols = _box_resize_matrix(x.shape[-1], w, x.device)
    return rows @ x.float() @ cols.T


def pixelate(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = _level((0.6, 0.5, 0.4, 0.3, 0.25), severity)  # ImageNet-C: downscale factor, PIL BOX down and up
    h, w = x.shape[-2:]
    small = _box_resize(x, max(1, int(h * c)), max(1, int(w * c)))
    return _clip(_box_resize(small, h, w), x)


def jpeg_compression(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    quality = _level((25, 18, 15, 10, 7), severity)  # ImageNet-C: JPEG quality
    pixels = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for img in pixels:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    decoded = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device)
    return _clip(decoded.float() / 255, x)


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "motion_blur": motion_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
"""Name -> corruption, in TeCo's order (its list minus defocus, glass and zoom blur, which SPEC §4 omits)."""
