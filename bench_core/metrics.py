"""Every metric bdbench reports, in one place (SPEC §5). Each is tested against hand-computed cases.

Conventions: predictions and labels are 1-D integer tensors; ``logits`` are (N, K); detector scores are
continuous, higher = more likely triggered. Rates are fractions in [0, 1]; the leaderboard prints percent.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import roc_auc_score, roc_curve


def _check(preds: torch.Tensor, labels: torch.Tensor) -> None:
    if preds.shape != labels.shape:
        raise ValueError(f"predictions {tuple(preds.shape)} and labels {tuple(labels.shape)} differ in shape")


def accuracy(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy; CACC when ``preds`` are zero-shot predictions on clean test images."""
    _check(preds, labels)
    if len(labels) == 0:
        return float("nan")
    return float((preds == labels).float().mean())



def asr(preds_triggered: torch.Tensor, labels: torch.Tensor, target: int) -> float:
    """Attack success rate over triggered images whose TRUE class is not the target (SPEC §5)."""
    _check(preds_triggered, labels)
    keep = labels != target
    if not bool(keep.any()):
        return float("nan")
    return float((preds_triggered[keep] == target).float().mean())


def asr_all_images(preds_triggered: torch.Tensor, target: int) -> float:
    """The paper's variant: fraction of ALL triggered images predicted as target (target class included)."""
    if len(preds_triggered) == 0:
        return float("nan")
    return float((preds_triggered == target).float().mean())


def robust_accuracy(preds_triggered: torch.Tensor, labels: torch.Tensor, target: int) -> float:
    """RA: triggered non-target images classified as their true class."""
    _check(preds_triggered, labels)
    keep = labels != target
    if not bool(keep.any()):
        return float("nan")
    return float((preds_triggered[keep] == labels[keep]).float().mean())


def auroc(scores_clean: torch.Tensor | np.ndarray, scores_triggered: torch.Tensor | np.ndarray) -> float:
    """Area under the ROC curve with triggered = positive, from continuous scores (ties count half)."""
    y, s = _detector_arrays(scores_clean, scores_triggered)
    return float(roc_auc_score(y, s))


def tpr_at_fpr(scores_clean: torch.Tensor | np.ndarray, scores_triggered: torch.Tensor | np.ndarray,
               fpr: float = 0.05) -> float:
    """Largest true-positive rate reachable at a false-positive rate <= ``fpr`` (thresholding the scores)."""
    y, s = _detector_arrays(scores_clean, scores_triggered)
    fprs, tprs, _ = roc_curve(y, s)
    ok = fprs <= fpr + 1e-12
    return float(tprs[ok].max()) if ok.any() else 0.0


def _detector_arrays(clean, triggered) -> tuple[np.ndarray, np.ndarray]:
    clean = np.asarray(clean, dtype=np.float64).ravel()
    triggered = np.asarray(triggered, dtype=np.float64).ravel()
    if len(clean) == 0 or len(triggered) == 0:
        raise ValueError("AUROC needs at least one clean and one triggered score")
    if not (np.isfinite(clean).all() and np.isfinite(triggered).all()):
        raise ValueError("detector scores must be finite")
    y = np.concatenate([np.zeros(len(clean)), np.ones(len(triggered))])
    return y, np.concatenate([clean, triggered])


def reliability_bins(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> list[dict[str, float]]:
    """Equal-width confidence bins over [0, 1] (the first closed on the left): per bin its ``lo`` / ``hi``
    edges, ``share`` of the samples, mean ``confidence`` and ``accuracy`` (both NaN for an empty bin).
    The data of a reliability diagram, and what :func:`expected_calibration_error` sums."""
    probs = F.softmax(logits.float(), dim=-1)
    conf, preds = probs.max(dim=-1)
    correct = (preds == labels).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        empty = not bool(in_bin.any())
        bins.append({"lo": float(lo), "hi": float(hi), "share": float(in_bin.float().mean()),
                     "confidence": float("nan") if empty else float(conf[in_bin].mean()),
                     "accuracy": float("nan") if empty else float(correct[in_bin].mean())})
    return bins


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins: sum_b |B|/N * |acc(B) - conf(B)| (Guo et al., 2017)."""
    return float(sum(b["share"] * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(logits, labels, n_bins) if b["share"] > 0))


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy of the true class (nats)."""
    return float(F.cross_entropy(logits.float(), labels.long()))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None]:
    """(mean, half-width of the Student-t interval). One value -> (value, None): never a fake interval."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return float("nan"), None
    mean = float(np.mean(vals))
    if len(vals) == 1:
        return mean, None
    from scipy import stats

    sem = float(np.std(vals, ddof=1)) / math.sqrt(len(vals))
    return mean, float(stats.t.ppf((1 + confidence) / 2, len(vals) - 1) * sem)


def psnr(reference: torch.Tensor, distorted: torch.Tensor, peak: float = 1.0) -> float:
    """Mean over images of the peak signal-to-noise ratio in dB (images in [0, peak]); identical -> inf."""
    if tuple(reference.shape) != tuple(distorted.shape):
        raise ValueError(f"PSNR needs equal shapes, got {tuple(reference.shape)} and {tuple(distorted.shape)}")
    if isinstance(reference, torch.Tensor) and isinstance(distorted, torch.Tensor):
        mse = (reference.float() - distorted.float()).pow(2).flatten(1).mean(dim=1)
    else:  # a lazy image column: read a batch at a time
        chunk = 256
        mse = torch.cat([(reference[i:i + chunk].float() - distorted[i:i + chunk].float()).pow(2).flatten(1)
                         .mean(dim=1) for i in range(0, len(reference), chunk)])
    return float((10 * torch.log10(peak ** 2 / mse)).mean())


def recall_at_k(similarity: torch.Tensor, k: int) -> float:
    """Retrieval recall@k for a square similarity matrix whose diagonal holds the true pairs (rows = queries)."""
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"recall@k needs a square similarity matrix, got {tuple(similarity.shape)}")
    topk = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    truth = torch.arange(similarity.shape[0])[:, None]
    return float((topk == truth).any(dim=1).float().mean())


def classification_metrics(clean_logits: torch.Tensor, clean_labels: torch.Tensor,
                           triggered_logits: torch.Tensor | None, triggered_labels: torch.Tensor | None,
                           target: int | None) -> dict[str, float]:
    """The defenses-table metrics of one evaluated pipeline: CACC, ECE, NLL and, under attack, ASR, RA."""
    preds = clean_logits.argmax(dim=-1)
    out = {"cacc": accuracy(preds, clean_labels),
           "ece": expected_calibration_error(clean_logits, clean_labels),
           "nll": negative_log_likelihood(clean_logits, clean_labels)}
    if triggered_logits is not None and target is not None:
        tpreds = triggered_logits.argmax(dim=-1)
        out["asr"] = asr(tpreds, triggered_labels, target)
        out["asr_all_images"] = asr_all_images(tpreds, target)
        out["ra"] = robust_accuracy(tpreds, triggered_labels, target)
    return out


def retrieval_metrics(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> dict[str, float]:
    """Image->text and text->image recall@1 and @5 for paired embeddings (row i of each is one pair)."""
    sim = F.normalize(image_embeddings.float(), dim=-1) @ F.normalize(text_embeddings.float(), dim=-1).T
    return {"i2t_r1": recall_at_k(sim, 1), "i2t_r5": recall_at_k(sim, 5),
            "t2i_r1": recall_at_k(sim.T, 1), "t2i_r5": recall_at_k(sim.T, 5)}


# --- metric metadata: the one place that says what a stored number means -----------------------------------

class MetricInfo(BaseModel):
    """What a stored metric is: its unit (how tables print it), which direction is better, and a one-line
    definition. ``percent`` numbers are stored as fractions in [0, 1] and printed x100."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # the stored key; a declaration may cover a family with a shell wildcard ("asr_direct_*")
    unit: Literal["percent", "dB", "ms", "s", "count", "nats", "ratio", "loss", "value", "index"]
    direction: Literal["higher", "lower", "none"]
    definition: str
    label: str = ""  # short column header; default: the name

    @property
    def percent(self) -> bool:
        return self.unit == "percent"

    @property
    def arrow(self) -> str:
        return {"higher": "↑", "lower": "↓", "none": ""}[self.direction]

    @property
    def header(self) -> str:
        """``ASR % ↓``: label, unit suffix and direction arrow."""
        suffix = {"percent": " %", "dB": " dB", "ms": " ms", "s": " s"}.get(self.unit, "")
        return f"{self.label or self.name}{suffix}{' ' + self.arrow if self.arrow else ''}"


CORE_METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(name="cacc", unit="percent", direction="higher", label="CACC",
               definition="zero-shot top-1 accuracy on clean test images"),
    MetricInfo(name="ref_cacc", unit="percent", direction="higher", label="CACC (reference)",
               definition="zero-shot top-1 accuracy on the clean reference split (the defender's validation "
                          "data, disjoint from the images CACC is measured on); what defenses are calibrated on"),
    MetricInfo(name="cacc_pretrained", unit="percent", direction="higher", label="CACC (pretrained)",
               definition="zero-shot top-1 accuracy of the clean pretrained model on clean test images"),
    MetricInfo(name="asr", unit="percent", direction="lower", label="ASR",
               definition="triggered test images whose true class is not the target, classified as the target"),
    MetricInfo(name="asr_all_images", unit="percent", direction="lower", label="ASR (all images)",
               definition="the paper's variant: every triggered test image, target class included"),
    MetricInfo(name="ra", unit="percent", direction="higher", label="RA",
               definition="triggered non-target test images classified as their true class"),
    MetricInfo(name="ece", unit="percent", direction="lower", label="ECE",
               definition="expected calibration error on clean test images (15 equal-width bins)"),
    MetricInfo(name="nll", unit="nats", direction="lower", label="NLL",
               definition="mean negative log-likelihood of the true class on clean test images"),
    MetricInfo(name="auroc", unit="percent", direction="higher", label="AUROC",
               definition="area under the ROC of detector scores, clean vs triggered non-target test images"),
    MetricInfo(name="tpr_at_5fpr", unit="percent", direction="higher", label="TPR@5%FPR",
               definition="share of triggered images flagged at the threshold that flags 5% of clean images"),
    *(MetricInfo(name=f"{way}_r{k}", unit="percent", direction="higher", label=f"R@{k} {arrow}",
                 definition=f"{what} recall@{k} on the retrieval split")
      for way, arrow, what in (("i2t", "i→t", "image-to-text"), ("t2i", "t→i", "text-to-image")) for k in (1, 5)),
    MetricInfo(name="ms_per_image", unit="ms", direction="lower", label="ms / image",
               definition="wall-clock milliseconds per scored or evaluated image"),
    MetricInfo(name="forward_passes_per_image", unit="count", direction="lower", label="fwd passes / image",
               definition="model forward passes spent per scored image"),
    MetricInfo(name="seconds", unit="s", direction="lower", label="seconds",
               definition="wall-clock seconds of the cell"),
    MetricInfo(name="attack_psnr_db", unit="dB", direction="higher", label="PSNR",
               definition="peak signal-to-noise ratio of triggered vs clean test images"),
    MetricInfo(name="attack_n_poison", unit="count", direction="none", label="poisoned pairs",
               definition="fine-tune pairs whose caption names the target although the image is not of it"),
    MetricInfo(name="attack_poison_fraction", unit="percent", direction="none", label="poisoned",
               definition="share of the fine-tune pairs poisoned"),
)


class UnknownMetric(KeyError):
    """A metric name no core table or plugin declared (:func:`metric_info`)."""


@lru_cache(maxsize=1)
def metric_catalogue() -> dict[str, MetricInfo]:
    """Every declared metric by name: the core's and those plugins declare through the
    ``bdbench_metric_info`` hook (a plugin may not redefine a core metric)."""
    from bench_core.registry import default_plugin_manager

    out = {m.name: m for m in CORE_METRICS}
    for declared in default_plugin_manager().hook.bdbench_metric_info():
        for m in declared or ():
            if m.name in out and out[m.name] != m:
                raise ValueError(f"metric {m.name!r} is declared twice with different metadata")
            out[m.name] = m
    return out


def metric_info(name: str) -> MetricInfo:
    """The metadata of ``name``; an undeclared name is an error naming the closest declared ones."""
    catalogue = metric_catalogue()
    if name not in catalogue:
        import fnmatch

        for pattern, info in catalogue.items():  # families a plugin declared with a wildcard
            if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern):
                return info.model_copy(update={"name": name})
        import difflib

        near = difflib.get_close_matches(name, catalogue, n=3)
        raise UnknownMetric(f"metric {name!r} is not declared (core metrics or a plugin's bdbench_metric_info)"
                            + (f"; did you mean {', '.join(near)}?" if near else ""))
    return catalogue[name]
