"""A small StegaStamp-like encoder–decoder (Tancik et al., 2020), trained from scratch for ISSBA.

The encoder maps (image, secret bits) to a residual that is added to the image; the decoder reads the bits
back from the encoded image. Both are fully convolutional up to a fixed-size pooling, so one architecture
serves any image size, and neither uses batch statistics: an image's residual does not depend on the rest
of its batch. Training draws a fresh random secret per image (as StegaStamp does): with one fixed secret the
decoder could output it for every input, clean or not, and the residual would collapse to zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench_core.metrics import psnr


class Encoder(nn.Module):
    """(image in [0, 1], bits in {0, 1}) -> residual of the image's shape (unbounded; trained to be small).

    With ``rms`` set, every image's residual is rescaled to that root-mean-square (an exact energy budget
    during training and use, instead of a penalty); ``rms`` is then a buffer of the state dict.
    """

    def __init__(self, bits: int, width: int, grid: int = 8, rms: float | None = None):
        super().__init__()
        self.grid = grid
        if rms is not None:
            self.register_buffer("rms", torch.tensor(float(rms)))
        else:
            self.rms = None
        self.secret = nn.Linear(bits, 3 * grid * grid)  # StegaStamp: a dense layer to a low-res map, upsampled
        self.inp = nn.Conv2d(6, width, 3, padding=1)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.fuse = nn.Conv2d(2 * width + width + 6, width, 3, padding=1)  # U-Net skip from the input level
        self.out = nn.Conv2d(width, 3, 1)

    def forward(self, images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        code = self.secret(bits - 0.5).view(n, 3, self.grid, self.grid)
        code = F.interpolate(code, size=(h, w), mode="nearest")
        x = torch.cat([images - 0.5, code], dim=1)
        f1 = F.relu(self.inp(x))
        f2 = F.relu(self.mid(F.relu(self.down(f1))))
        up = F.interpolate(f2, size=(h, w), mode="nearest")
        residual = self.out(F.relu(self.fuse(torch.cat([up, f1, x], dim=1))))
        if self.rms is None:
            return residual
        norm = residual.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-12).sqrt()
        return residual * (self.rms / norm)


class Decoder(nn.Module):
    """Encoded image -> one logit per secret bit."""

    def __init__(self, bits: int, width: int, pooled: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(pooled))
        self.head = nn.Sequential(nn.Linear(2 * width * pooled * pooled, 128), nn.ReLU(), nn.Linear(128, bits))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images - 0.5).flatten(1))


@dataclass(frozen=True)
class StegaSettings:
    bits: int
    width: int
    steps: int
    batch_size: int
    lr: float
    l2_weight: float
    l2_start: float  # earliest fraction of the steps at which the L2 weight starts to rise
    l2_full: float  # the rise lasts (l2_full - l2_start) of the steps
    l2_gate: float  # ... and starts only once the decoder reads this fraction of the bits (running mean)
    fixed_rms: float | None = None  # train with every residual rescaled to this RMS (see Encoder)
    code_grid: int = 8  # side of the secret's dense map before upsampling to the image


@dataclass(frozen=True)
class StegaReport:
    bit_accuracy: float  # fixed secret, held images
    psnr_db: float  # encoded vs clean held images
    clean_bit_accuracy: float  # decoder on clean held images vs the fixed secret (chance: ~0.5)
    l2_from_step: int | None  # where the L2 weight started to rise (None: the decoder never read the bits)
    final_loss: float
    seconds: float


def encode(encoder: Encoder, images: torch.Tensor, bits: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Encoded images ``clamp(x + scale * encoder(x, bits), 0, 1)``; ``bits`` is (B,) for all images or (N, B)."""
    if bits.ndim == 1:
        bits = bits.expand(len(images), -1)
    return (images + scale * encoder(images, bits)).clamp(0, 1)


@torch.no_grad()
def evaluate_stego(encoder: Encoder, decoder: Decoder, held: torch.Tensor, secret: torch.Tensor,
                   scale: float = 1.0) -> tuple[float, float, float]:
    """(bit accuracy, PSNR dB, clean bit accuracy) of the fixed ``secret`` on ``held`` with the residual
    multiplied by ``scale``. Clean bit accuracy is the decoder on unencoded images (chance: about 0.5)."""
    encoded = encode(encoder, held, secret, scale)
    truth = secret.expand(len(held), -1)

    def bits_read(images: torch.Tensor) -> float:
        return float(((decoder(images) > 0).float() == truth).float().mean())

    return bits_read(encoded), psnr(held.cpu(), encoded.cpu()), bits_read(held)


@torch.no_grad()
def scale_for_psnr(encoder: Encoder, held: torch.Tensor, secret: torch.Tensor, budget_db: float,
                   iterations: int = 40) -> float:
    """The residual scale at which the encoded ``held`` images have PSNR ``budget_db`` against the clean ones.

    PSNR falls monotonically as the scale grows (clamping to [0, 1] only slows the fall), so bisection on
    the log scale finds it; the result is accurate to well under 0.01 dB.
    """
    residual = encoder(held, secret.expand(len(held), -1))
    if float(residual.abs().max()) == 0.0:
        raise ValueError("the ISSBA encoder outputs a zero residual: no scale reaches a PSNR budget")

    def psnr_at(scale: float) -> float:
        return psnr(held.cpu(), (held + scale * residual).clamp(0, 1).cpu())

    low, high = 1e-4, 1e4  # scales; psnr_at(low) > budget > psnr_at(high) for any sensible budget
    floor, ceiling = psnr_at(high), psnr_at(low)
    if not floor < budget_db < ceiling:
        raise ValueError(f"PSNR budget {budget_db} dB is out of reach of this encoder's residual "
                         f"({floor:.1f} to {ceiling:.1f} dB)")
    for _ in range(iterations):
        mid = (low * high) ** 0.5
        low, high = (mid, high) if psnr_at(mid) > budget_db else (low, mid)
    return (low * high) ** 0.5


def train_stegastamp(images: torch.Tensor, held: torch.Tensor, secret: torch.Tensor, settings: StegaSettings,
                     generator: torch.Generator, device: torch.device | str = "cpu"
                     ) -> tuple[Encoder, Decoder, StegaReport]:
    """Train encoder and decoder on ``images`` with random secrets; report on ``held`` with ``secret``.

    Loss = BCE(decoded bits) + w(t) * mean squared residual. w stays 0 until ``l2_start`` of the steps have
    passed and the decoder reads ``l2_gate`` of the training bits, then rises linearly to ``l2_weight`` over
    ``l2_full - l2_start`` of the steps. StegaStamp ramps its image losses too: a residual penalised before
    the decoder can read it collapses to zero (seen here with a fixed schedule on small data). With
    ``fixed_rms`` the encoder holds every residual at that RMS, so the penalty has nothing to act on. All
    randomness (initialisation, batches, secrets) comes from ``generator``.
    """
    s = settings
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
        encoder, decoder = Encoder(s.bits, s.width, s.code_grid, rms=s.fixed_rms), Decoder(s.bits, s.width)
    encoder.to(device).train()
    decoder.to(device).train()
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=s.lr)
    ramp = max(1.0, (s.l2_full - s.l2_start) * s.steps)
    gate: int | None = None  # the step at which the L2 weight starts to rise
    reading = 0.5  # running mean of the training bit accuracy
    loss = torch.zeros(())
    for step in range(s.steps):
        idx = torch.randint(0, len(images), (s.batch_size,), generator=generator)
        x = images[idx].to(device)
        bits = torch.randint(0, 2, (s.batch_size, s.bits), generator=generator).float().to(device)
        residual = encoder(x, bits)
        logits = decoder((x + residual).clamp(0, 1))
        reading = 0.9 * reading + 0.1 * float(((logits > 0).float() == bits).float().mean())
        if gate is None and step >= s.l2_start * s.steps and reading >= s.l2_gate:
            gate = step
        weight = 0.0 if gate is None else s.l2_weight * min(1.0, (step - gate) / ramp)
        loss = F.binary_cross_entropy_with_logits(logits, bits) + weight * residual.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    encoder.eval()
    decoder.eval()
    bit_accuracy, psnr_db, clean_bit_accuracy = evaluate_stego(encoder, decoder, held.to(device), secret.to(device))
    report = StegaReport(bit_accuracy=bit_accuracy, psnr_db=psnr_db, clean_bit_accuracy=clean_bit_accuracy,
                         l2_from_step=gate, final_loss=float(loss.detach()), seconds=time.perf_counter() - started)
    return encoder.cpu(), decoder.cpu(), report
