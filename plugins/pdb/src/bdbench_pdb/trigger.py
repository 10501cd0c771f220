"""PDB's two secrets: the defensive trigger Δ1 and the reversible label map h.

* :class:`DefensiveTrigger` stamps a ``patch_size`` square at the top-left corner (the reference's
  ``trigger_type 1``). Its value may lie outside [0, 1] (reference: 2.0) and is never clamped here: the
  stamped tensor goes straight to ``ClipModel.normalize``, which only shifts and scales. Such a value exists
  only in a float pipeline; any 8-bit step (PNG, JPEG, a uint8 tensor) clips it to 1.0.
* :class:`LabelShift` is h(y) = (y + shift) mod K with inverse h⁻¹(k) = (k - shift) mod K. Its
  :meth:`LabelShift.unmap_logits` reorders logit columns so that column y holds the model's logit for h(y):
  the argmax of the reordered logits is h⁻¹ of the model's argmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class DefensiveTrigger:
    """Δ1: a top-left ``patch_size`` square of ``value`` (solid) or of ``value`` / ``low`` (checkerboard)."""

    patch_size: int
    value: float
    pattern: Literal["solid", "checkerboard"] = "solid"
    low: float = 0.0  # the checkerboard's other value

    def patch(self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """The (3, s, s) patch."""
        s = self.patch_size
        if self.pattern == "solid":
            return torch.full((3, s, s), self.value, dtype=dtype, device=device)
        yy, xx = torch.meshgrid(torch.arange(s, device=device), torch.arange(s, device=device), indexing="ij")
        board = torch.where((yy + xx) % 2 == 0, self.value, self.low).to(dtype)
        return board.expand(3, s, s).clone()

    def mask(self, height: int, width: int) -> torch.Tensor:
        """(H, W) bool: the pixels Δ1 overwrites."""
        m = torch.zeros(height, width, dtype=torch.bool)
        m[:self.patch_size, :self.patch_size] = True
        return m

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """A stamped copy of ``images`` (N, 3, H, W); values are written as they are (no clamping)."""
        if images.ndim != 4:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        s = self.patch_size
        if s > min(images.shape[-2:]):
            raise ValueError(f"defensive patch {s} px exceeds the image size {tuple(images.shape[-2:])}")
        out = images.clone()
        out[:, :, :s, :s] = self.patch(images.dtype, images.device)
        return out


@dataclass(frozen=True)
class LabelShift:
    """h(y) = (y + shift) mod n_classes; a permutation whenever shift is not a multiple of n_classes."""

    n_classes: int
    shift: int = 1

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError(f"PDB needs at least 2 classes, got {self.n_classes}")
        if self.shift % self.n_classes == 0:
            raise ValueError(f"shift {self.shift} is a multiple of the {self.n_classes} classes: h would be the "
                             "identity and the defensive backdoor could not be told apart from the task")

    def h(self, y: int | torch.Tensor) -> int | torch.Tensor:
        return (y + self.shift) % self.n_classes

    def h_inv(self, k: int | torch.Tensor) -> int | torch.Tensor:
        return (k - self.shift) % self.n_classes

    @property
    def columns(self) -> torch.Tensor:
        """Column y of the unmapped logits is column h(y) of the model's logits."""
        return self.h(torch.arange(self.n_classes))

    def unmap_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K) logits over h-labels -> logits over the original labels (a column permutation)."""
        if logits.shape[-1] != self.n_classes:
            raise ValueError(f"logits have {logits.shape[-1]} classes, the label map {self.n_classes}")
        return logits[..., self.columns.to(logits.device)]
