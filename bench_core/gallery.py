"""Trigger gallery: for each attack, clean | triggered | amplified difference on a few test images.

The run stores, per attack (first seed), a few evaluation images and their triggered copies (a ``gallery``
unit); the leaderboard draws them under ``figures/trigger_gallery_<attack>.png`` without touching the data.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def gallery_png(clean: torch.Tensor, triggered: torch.Tensor, path: Path, title: str) -> Path:
    """Three rows (clean, triggered, |difference| scaled to full range) for (N, 3, H, W) images in [0, 1]."""
    diff = (triggered - clean).abs()
    diff = diff / diff.amax().clamp_min(1e-8)
    n = len(clean)
    fig, axes = plt.subplots(3, n, figsize=(1.4 * n, 4.6), squeeze=False)
    for row, (label, batch) in enumerate((("clean", clean), ("triggered", triggered), ("|diff| amplified", diff))):
        for col in range(n):
            ax = axes[row, col]
            ax.imshow(batch[col].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_galleries(plan, cache, figures_dir: Path) -> dict[str, Path]:
    """A gallery per attack from the images the run stored (its gallery units); attacks without one (the run
    never reached them) are skipped. Nothing is decoded or re-triggered here."""
    out: dict[str, Path] = {}
    for name, unit in plan.galleries().items():
        hit = cache.load(unit.key)
        if hit is None:
            continue
        tensors, _ = hit
        title = f"{name} ({unit.attack.locality}), seed {unit.seed}: clean / triggered / amplified difference"
        file = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
        out[name] = gallery_png(tensors["clean"], tensors["triggered"], figures_dir / f"trigger_gallery_{file}.png",
                                title)
    return out
