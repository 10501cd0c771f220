"""Render the plot specs that probes return (see :class:`bench_core.interfaces.ProbeResult`) as PNG files.

Probes stay pure (they return data); only the leaderboard draws. Supported spec types: ``line`` (``x`` and
``series`` of equal-length lists), ``bar`` (``x`` labels, ``series``) and ``density`` (``series`` of samples,
drawn as overlaid histograms, one panel per series pair when the labels share a suffix such as ``h3``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def render(spec: dict[str, Any], path: Path) -> Path:
    """Draw ``spec`` into ``path`` (PNG); raises ValueError for an unknown type."""
    kind = spec.get("type")
    if kind == "line":
        fig = _line(spec)
    elif kind == "bar":
        fig = _bar(spec)
    elif kind == "density":
        fig = _density(spec)
    else:
        raise ValueError(f"unknown figure type {kind!r}; allowed: line, bar, density")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _finish(ax, spec: dict[str, Any]) -> None:
    ax.set_xlabel(spec.get("xlabel", ""))
    ax.set_ylabel(spec.get("ylabel", ""))
    ax.grid(alpha=0.3)


def _line(spec: dict[str, Any]):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = spec["x"]
    for label, ys in spec["series"].items():
        dashed = "no " in label or "baseline" in label
        ax.plot(x, ys, marker="" if dashed else "o", linestyle="--" if dashed else "-", label=label)
    if spec.get("xscale"):
        ax.set_xscale(spec["xscale"])
    elif x and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        ax.set_xticks(x)  # integer positions (layers, heads): no fractional ticks
    _finish(ax, spec)
    ax.set_title(spec.get("title", ""), fontsize=10)
    ax.legend(fontsize=7)
    return fig


def _bar(spec: dict[str, Any]):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    labels = [str(v) for v in spec["x"]]
    n = max(1, len(spec["series"]))
    width = 0.8 / n
    for i, (label, ys) in enumerate(spec["series"].items()):
        ax.bar([j + i * width for j in range(len(labels))], ys, width=width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=30, ha="right", fontsize=8)
    _finish(ax, spec)
    ax.set_title(spec.get("title", ""), fontsize=10)
    ax.legend(fontsize=7)
    return fig


def _density(spec: dict[str, Any]):
    groups: dict[str, list[tuple[str, list[float]]]] = {}
    for label, values in spec["series"].items():
        key = label.split()[-1] if " " in label else label
        groups.setdefault(key, []).append((label, values))
    n = len(groups)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (key, members) in zip(axes.flat, groups.items()):
        for label, values in members:
            ax.hist(values, bins=30, density=True, alpha=0.5, label=label.split()[0])
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(spec.get("title", ""), fontsize=10)
    fig.supxlabel(spec.get("xlabel", ""), fontsize=9)
    fig.tight_layout()
    return fig
