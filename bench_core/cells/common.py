"""What every cell kind shares: its result shape and the fixed per-seed sample of evaluation images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from bench_core import __version__ as CORE_VERSION
from bench_core.plan import PluginSpec


@dataclass
class CellResult:
    """Metrics (finite floats), cost (seconds, forward passes), payload (tables, figures, tags), versions."""

    metrics: dict[str, float]
    cost: dict[str, float]
    payload: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


def versions(specs: Iterable[PluginSpec], attack: PluginSpec | None = None) -> dict[str, str]:
    """bench_core's version and that of every plugin the cell ran: its defenses, detector or probe, the attack
    it faces and, for an adaptive attack, the plugins it targets."""
    out = {"bench_core": CORE_VERSION}
    every = [*specs, *([attack, *getattr(attack, "targets", ())] if attack is not None else [])]
    out.update({s.name: s.version for s in every})
    return out


def sample(labels: torch.Tensor, seed: int, target_class: int, n: int, salt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``n`` clean evaluation indices and ``n`` triggered non-target indices, fixed per (seed, salt)."""
    g = torch.Generator().manual_seed(seed * 7919 + len(salt))
    clean_idx = torch.randperm(len(labels), generator=g)[:n]
    nontarget = (labels != target_class).nonzero().flatten()
    trig_idx = nontarget[torch.randperm(len(nontarget), generator=g)[:n]]
    return clean_idx, trig_idx
