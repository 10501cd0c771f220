"""Trigger gallery: for each attack, clean | triggered | amplified difference on a few test images.

Drawn from the attack state the runner cached (nothing is re-optimised); written by the leaderboard under
``figures/trigger_gallery_<attack>.png``.
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


def write_galleries(plan, workspace, figures_dir: Path, n_images: int = 6) -> dict[str, Path]:
    """A gallery per attack whose state is cached for the suite's first seed; attacks without one are skipped."""
    from bench_core.keys import attack_state_key

    out: dict[str, Path] = {}
    seed = plan.suite.seeds[0]
    for spec in plan.attacks:
        name = spec.label
        hit = workspace.cache.load(attack_state_key(spec, workspace.clean_key, seed))
        if hit is None:
            continue
        attack = spec.instantiate()
        attack.load_state(hit[0])
        evaluation = workspace.data.evaluation.images
        images = evaluation[:: max(1, len(evaluation) // n_images)][:n_images]
        ctx = workspace.context(seed, attack.threat_model.reads - {"clean_model"})
        triggered = attack.apply_trigger(images, ctx, train=False).clamp(0, 1)
        title = f"{name} ({attack.locality}), seed {seed}: clean / triggered / amplified difference"
        file = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
        out[name] = gallery_png(images, triggered, figures_dir / f"trigger_gallery_{file}.png", title)
    return out
