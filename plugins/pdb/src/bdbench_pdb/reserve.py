"""Choosing PDB's reserved pairs: the labels a defender can read, and a class-balanced seeded draw.

A CLIP defender holds captions, not labels. In bdbench's ``PairSet`` the ``labels`` column is the generator's
ground truth: a poisoned pair keeps its image's TRUE class there while its caption names the attack's
target. The reference (supervised) code draws its reserve from the poisoned labels, so the faithful
realistic analogue reads the class a caption names (:func:`caption_labels`); reading ``labels`` instead
(``label_source="labels"``) hands the defender the clean label of every poisoned pair it reserves.
"""

from __future__ import annotations

import re
from typing import Literal, Sequence

import torch

from bench_core import PairSet

LabelSource = Literal["caption", "labels"]


def caption_labels(captions: Sequence[str], classnames: Sequence[str]) -> torch.Tensor:
    """(N,) class index named by each caption, or -1 when it names no class or several.

    Matching is case-insensitive on whole words; a match contained in a longer matched class name
    ("cat" inside "tiger cat") is ignored.
    """
    patterns = [re.compile(rf"\b{re.escape(name.lower())}\b") for name in classnames]
    out = []
    for caption in captions:
        text = caption.lower()
        hits = [k for k, p in enumerate(patterns) if p.search(text)]
        hits = [k for k in hits if not any(k != j and classnames[k].lower() in classnames[j].lower() for j in hits)]
        out.append(hits[0] if len(hits) == 1 else -1)
    return torch.tensor(out, dtype=torch.long)


def defender_labels(pairs: PairSet, classnames: Sequence[str], source: LabelSource) -> torch.Tensor:
    """The labels the reserve is drawn and relabelled by (-1 = not eligible)."""
    if source == "caption":
        return caption_labels(pairs.captions, classnames)
    if source == "labels":
        return pairs.labels.long().clone()
    raise ValueError(f"unknown label source {source!r}; allowed: caption, labels")


def stratified_draw(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Up to ``n`` indices with label >= 0, spread as evenly as possible over the classes present.

    Classes are visited round-robin in a random order, each yielding its own shuffled indices, until ``n``
    are taken or the eligible pairs run out (the reference draws ``ratio * N / K`` per class, which is 0 on
    small sets). Returns sorted indices; deterministic given the generator.
    """
    classes = labels[labels >= 0].unique()
    if len(classes) == 0 or n <= 0:
        return torch.empty(0, dtype=torch.long)
    classes = classes[torch.randperm(len(classes), generator=generator)]
    pools = []
    for c in classes.tolist():
        idx = (labels == c).nonzero().flatten()
        pools.append(idx[torch.randperm(len(idx), generator=generator)].tolist())
    taken: list[int] = []
    depth = 0
    while len(taken) < n and any(depth < len(p) for p in pools):
        for pool in pools:
            if depth < len(pool) and len(taken) < n:
                taken.append(pool[depth])
        depth += 1
    return torch.tensor(sorted(taken), dtype=torch.long)
