"""textspan probe (paper §3 Finding 3, Fig. 3–4, appendix E): describe a component's output space with text,
on clean and on triggered images, and compare the two descriptions.

TEXTSPAN (Gandelsman et al., ICLR 2024; :func:`text_span`): given a component's direct contributions C (N, D)
and unit text embeddings T (M, D) from the model's own text tower, pick k texts greedily. Each step takes the
text whose current direction t maximises ||C t||² (the variance of C along t, C being centred), records the
fraction of C's total variance that the unit direction t/||t|| captures, and removes that direction from C
and from every text. Picked directions are therefore orthogonal and their fractions sum to at most 1.

The probe runs it for every last-layer head ("L{l}.h{h}") and for the MLPs of the last ``late_mlps`` layers
("L{l}.mlp"; layers counted from 0), separately on ``data.clean_images`` and ``data.triggered_images`` as
the classifier's model sees them (its ``input_transform`` applied, see :mod:`bdbench_decomp.analysis`).

Output:

- table ``textspan``: one row per component, image set ("clean" / "triggered") and rank (1..k): the text
  and ``variance_fraction``, the share of that component's variance it explains;
- table ``textspan_components``: per component, ``overlap`` (shared texts / k between the clean and the
  triggered top-k), ``text_similarity`` (cosine between the mean embeddings of the two top-k sets; the
  paper's Fig. 3 "text similarity"), the total variance explained on each set, and whether each set's
  top-k names the target class (0/1);
- figure ``textspan``: bar chart of the variance the top-k explain per component, clean vs triggered;
- summary: component counts whose top-k names the target class, on clean and on triggered images, the mean
  variance explained, and the mean overlap and text similarity (all components, heads only, MLPs only).

The text pool defaults to :func:`bdbench_decomp.text_pool.text_pool` (class names, the world's vocabulary,
trigger-like descriptions); config ``texts`` replaces it. It reads no labels and no context field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from bench_core import PluginConfig, Probe, ProbeData, ProbeResult, RunContext, ThreatModel, ZeroShotClassifier
from bench_core.decomposition import Decomposition
from bench_core.models import ClipModel

from bdbench_decomp.analysis import decompose_inputs
from bdbench_decomp.text_pool import text_pool

_TINY = 1e-9  # a text direction shorter than this is numerically spanned by the picks


@dataclass(frozen=True)
class Span:
    """TEXTSPAN's answer: ``indices`` into the text pool in pick order, ``explained`` the share of the
    contributions' total variance each pick captures, ``directions`` (k, D) the unit directions removed."""

    indices: list[int]
    explained: list[float]
    directions: torch.Tensor


def text_span(contributions: torch.Tensor, texts: torch.Tensor, k: int, centre_texts: bool = True,
              rank: int | None = None) -> Span:
    """Greedy TEXTSPAN of ``contributions`` (N, D) over text embeddings ``texts`` (M, D); see the module doc.

    ``centre_texts`` subtracts the pool's mean embedding first (the direction every "a photo of ..." phrase
    shares) and re-normalises each text. ``rank`` first projects the texts onto the top-``rank`` principal
    directions of the contributions (the reference code's ``w_ov_rank``); None keeps them whole. Texts are not
    re-normalised after a removal, as in the reference code: a text mostly explained by earlier picks keeps
    only its small remainder and is rarely picked next.
    """
    if k < 1 or k > len(texts):
        raise ValueError(f"k={k} texts requested from a pool of {len(texts)}; need 1 <= k <= pool size")
    c = contributions.double()
    c = c - c.mean(dim=0, keepdim=True)
    t = F.normalize(texts.double(), dim=-1)
    if centre_texts:
        t = F.normalize(t - t.mean(dim=0, keepdim=True), dim=-1)
    if rank is not None:
        basis = torch.linalg.svd(c, full_matrices=False).Vh[:rank]  # (r, D) orthonormal rows
        t = t @ basis.T @ basis
    total = float(c.pow(2).sum())
    picked: list[int] = []
    explained: list[float] = []
    directions = []
    for _ in range(k):
        scores = (c @ t.T).pow(2).sum(dim=0)  # (M,) = N * variance of C along each (unnormalised) text
        scores[picked] = -1.0
        j = int(scores.argmax())
        norm = float(t[j].norm())
        if norm < _TINY:  # every remaining text is already spanned by the picks: directions are undefined
            raise ValueError(f"text pool spans only {len(picked)} directions; lower k (now {k})")
        u = t[j] / norm
        along = c @ u
        picked.append(j)
        explained.append(float(along.pow(2).sum()) / total if total > 0 else 0.0)
        directions.append(u)
        c = c - along[:, None] * u
        t = t - (t @ u)[:, None] * u
    return Span(picked, explained, torch.stack(directions))


@torch.no_grad()
def encode_texts(model: ClipModel, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(M, D) unit text embeddings on the CPU."""
    parts = [model.encode_text(list(texts[i:i + batch_size])).float().cpu() for i in range(0, len(texts), batch_size)]
    return F.normalize(torch.cat(parts), dim=-1)


def mentions(texts: Sequence[str], word: str) -> bool:
    """Whether any of ``texts`` contains ``word`` as a whole word (case-insensitive)."""
    pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
    return any(pattern.search(t) for t in texts)


class TextSpanConfig(PluginConfig):
    k: int = Field(5, ge=1)  # texts per component: the paper's Fig. 4 shows the top 5
    late_mlps: int = Field(3, ge=0)  # MLPs of this many last layers (paper Fig. 4: all 12; 3 keeps tables short)
    texts: tuple[str, ...] | None = None  # the text pool; None: text_pool(ctx.classnames)
    centre_texts: bool = True  # subtract the pool's mean embedding (bdbench's choice, see text_span)
    rank: int | None = Field(None, ge=1)  # reference code: 80 (of 1024 dims, ViT-H); None: no projection

    @field_validator("texts")
    @classmethod
    def _texts_not_empty(cls, texts: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if texts is None:
            return None
        if not texts:
            raise ValueError("texts is empty: give at least k texts, or leave it unset for the generated pool")
        blank = [i for i, t in enumerate(texts) if not t.strip()]
        if blank:
            raise ValueError(f"texts has blank entries at positions {blank}")
        return texts

    @model_validator(mode="after")
    def _enough_texts(self) -> "TextSpanConfig":
        need = self.k + int(self.centre_texts)  # centring removes one direction from the pool's span
        if self.texts is not None and len(set(self.texts)) < need:
            raise ValueError(f"texts has {len(set(self.texts))} distinct entries; k={self.k} needs at least {need}"
                             + (" (centred texts span one direction fewer)" if self.centre_texts else ""))
        return self


Selector = Callable[[Decomposition], torch.Tensor]


class TextSpan(Probe):
    name = "textspan"
    version = "0.1.0"
    Config = TextSpanConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        data="the evaluation images the runner hands to probes, no labels", knowledge="none", reads=frozenset())
    summary = "TEXTSPAN descriptions of last-layer heads and late MLPs, clean vs triggered (paper Fig. 3-4)"

    def components(self, d: Decomposition) -> list[tuple[str, Selector]]:
        """(label, contributions getter) for every last-layer head, then the last ``late_mlps`` MLPs."""
        last = d.n_layers - 1
        out: list[tuple[str, Selector]] = [
            (f"L{last}.h{h}", lambda x, h=h: x.heads[:, -1, h]) for h in range(d.n_heads)]
        out += [(f"L{layer}.mlp", lambda x, layer=layer: x.mlps[:, layer])
                for layer in range(max(0, d.n_layers - self.config.late_mlps), d.n_layers)]
        return out

    def run(self, classifier: ZeroShotClassifier, data: ProbeData, ctx: RunContext) -> ProbeResult:
        cfg = self.config
        pool = tuple(dict.fromkeys(cfg.texts)) if cfg.texts is not None else text_pool(ctx.classnames)
        embeddings = encode_texts(classifier.model, pool)
        target = ctx.classnames[data.target_class] if 0 <= data.target_class < len(ctx.classnames) else None
        sets = {"clean": decompose_inputs(classifier, data.clean_images),
                "triggered": decompose_inputs(classifier, data.triggered_images)}
        rows, per_component = [], []
        for label, get in self.components(sets["clean"]):
            spans = {which: text_span(get(d), embeddings, cfg.k, cfg.centre_texts, cfg.rank)
                     for which, d in sets.items()}
            for which, span in spans.items():
                rows += [{"component": label, "images": which, "rank": r + 1, "text": pool[j],
                          "variance_fraction": v} for r, (j, v) in enumerate(zip(span.indices, span.explained))]
            per_component.append(self._compare(label, spans, pool, embeddings, target))
        return ProbeResult(tables={"textspan": rows, "textspan_components": per_component},
                           figures={"textspan": self._figure(per_component)},
                           summary=self._summary(per_component, len(pool)))

    def _compare(self, label: str, spans: dict[str, Span], pool: tuple[str, ...], embeddings: torch.Tensor,
                 target: str | None) -> dict:
        a, b = spans["clean"].indices, spans["triggered"].indices
        mean_a, mean_b = embeddings[a].mean(0), embeddings[b].mean(0)
        row = {"component": label, "overlap": len(set(a) & set(b)) / self.config.k,
               "text_similarity": float(F.cosine_similarity(mean_a, mean_b, dim=0))}
        for which, span in spans.items():
            row[f"{which}_variance_fraction"] = sum(span.explained)
            texts = [pool[j] for j in span.indices]
            row[f"{which}_names_target"] = int(target is not None and mentions(texts, target))
        return row

    @staticmethod
    def _summary(per_component: list[dict], pool_size: int) -> dict[str, float]:
        def mean(key: str, rows: list[dict]) -> float:
            return sum(r[key] for r in rows) / len(rows) if rows else float("nan")

        heads = [r for r in per_component if ".h" in r["component"]]
        mlps = [r for r in per_component if r["component"].endswith(".mlp")]
        out = {"pool_size": float(pool_size), "n_components": float(len(per_component))}
        for which in ("clean", "triggered"):
            out[f"components_naming_target_{which}"] = float(sum(r[f"{which}_names_target"] for r in per_component))
            out[f"variance_explained_{which}_mean"] = mean(f"{which}_variance_fraction", per_component)
        for suffix, rows in (("", per_component), ("_heads", heads), ("_mlps", mlps)):
            if rows:
                out[f"overlap_mean{suffix}"] = mean("overlap", rows)
                out[f"text_similarity_mean{suffix}"] = mean("text_similarity", rows)
        return out

    @staticmethod
    def _figure(per_component: list[dict]) -> dict:
        return {"type": "bar", "title": "Variance explained by the TEXTSPAN top-k texts (paper Fig. 3-4)",
                "xlabel": "component", "ylabel": "fraction of the component's variance",
                "x": [r["component"] for r in per_component],
                "series": {which: [r[f"{which}_variance_fraction"] for r in per_component]
                           for which in ("clean", "triggered")}}
