"""``pdb_robustness``: does PDB survive the channel between the defender's stamp and the model, and what does
it do to calibration? (The critique's questions 1 and 3.)

Run it on a PDB-defended classifier (suite: ``probes: [{name: pdb_robustness, pipeline: [pdb]}]``): its
``input_transform`` stamps Δ1 and its ``output_map`` applies h⁻¹. Order per channel: stamp Δ1, then the
channel (JPEG, resize, 8-bit), then the model, then h⁻¹ — the defender stamps before the input is stored
or sent.

Tables:

* ``pdb_channels`` — one row per channel: ``cacc`` on clean images, ``asr`` / ``ra`` on triggered non-target
  images, and what is left of Δ1 inside its patch (``trigger_peak``: largest value there; ``trigger_mae``:
  mean absolute change there). A last row ``no Δ1 (plain model)`` is the PDB-trained model used without
  the defense at inference.
* ``pdb_calibration`` — ECE (15 bins) and NLL on clean images with Δ1 (+ h⁻¹) and without (plain model).

Figures: ``pdb_reliability`` (reliability diagram: accuracy per confidence bin, with and without Δ1, against
the diagonal of perfect calibration) and ``pdb_channels`` (CACC and ASR per channel).

Summary: ``ece_with_trigger``, ``nll_with_trigger``, ``ece_without_trigger``, ``nll_without_trigger`` and
``cacc_<channel>`` / ``asr_<channel>`` per channel (non-alphanumerics as ``_``: ``cacc_resize_x0_5``), and
``cacc_no_trigger`` / ``asr_no_trigger``.
"""

from __future__ import annotations

import re
from typing import Callable, ClassVar

import torch
from pydantic import Field

from bench_core import PluginConfig, Probe, ProbeData, ProbeResult, RunContext, ThreatModel, ZeroShotClassifier
from bench_core.metrics import (accuracy, asr, expected_calibration_error, negative_log_likelihood,
                                reliability_bins, robust_accuracy)
from bench_core.zeroshot import batched_logits

from bdbench_pdb.channels import jpeg, quantize_8bit, resize_down_up

Channel = Callable[[torch.Tensor], torch.Tensor]


class RobustnessConfig(PluginConfig):
    jpeg_qualities: tuple[int, ...] = (90, 75, 50)  # critique Q1 (JPEG); high, PIL's default (75), low
    resize_factor: float = Field(0.5, gt=0, lt=1)  # critique Q1 (resizing): half size and back
    ece_bins: int = Field(15, ge=2)  # Guo et al. (2017), bench_core's default


class PDBRobustness(Probe):
    name = "pdb_robustness"
    version = "0.2.0"
    Config = RobustnessConfig
    summary = ("PDB's CACC / ASR after JPEG, resizing and 8-bit storage of Δ1-stamped inputs; "
               "ECE / NLL with and without Δ1")
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        data="the evaluation images the runner hands to probes", knowledge="none", reads=frozenset())

    def channels(self) -> dict[str, Channel]:
        out: dict[str, Channel] = {"none": lambda x: x}  # the float pipeline as deployed
        for q in self.config.jpeg_qualities:
            out[f"jpeg_q{q}"] = lambda x, q=q: jpeg(x, q)
        out[f"resize_x{self.config.resize_factor:g}"] = lambda x: resize_down_up(x, self.config.resize_factor)
        out["quantize_8bit"] = quantize_8bit
        return out

    def run(self, classifier: ZeroShotClassifier, data: ProbeData, ctx: RunContext) -> ProbeResult:
        stamp = getattr(classifier, "input_transform", None)
        if stamp is None:
            raise ValueError("pdb_robustness needs a PDB-wrapped classifier (its input_transform stamps Δ1): "
                             "run it on a pipeline with pdb, e.g. probes: [{name: pdb_robustness, pipeline: [pdb]}]")
        after_channel = classifier.replace(input_transform=None)  # keeps h⁻¹ (and any embedder swap)
        plain = classifier.replace(input_transform=None, output_map=None)
        clean, trig = data.clean_images.cpu(), data.triggered_images.cpu()
        clean_stamped, trig_stamped = stamp(clean).cpu(), stamp(trig).cpu()
        region = (clean_stamped != clean).any(dim=1)  # (N, H, W): where Δ1 changed the clean images

        rows, summary = [], {}
        for name, channel in self.channels().items():
            sent = channel(clean_stamped)
            row = {"channel": name, **self._scores(after_channel, sent, channel(trig_stamped), data)}
            row.update(_trigger_left(clean_stamped, sent, region))
            rows.append(row)
            key = re.sub(r"[^a-z0-9]+", "_", name.lower())
            summary[f"cacc_{key}"] = row["cacc"]
            summary[f"asr_{key}"] = row["asr"]
        rows.append({"channel": "no Δ1 (plain model)", **self._scores(plain, clean, trig, data),
                     "trigger_peak": None, "trigger_mae": None})
        summary["cacc_no_trigger"] = rows[-1]["cacc"]
        summary["asr_no_trigger"] = rows[-1]["asr"]

        calibration, reliability = [], {}
        for label, logits in (("with Δ1 (+ h⁻¹)", batched_logits(classifier, clean)),
                              ("without Δ1 (plain model)", batched_logits(plain, clean))):
            calibration.append({"inputs": label, "cacc": accuracy(logits.argmax(1), data.clean_labels),
                                "ece": expected_calibration_error(logits, data.clean_labels, self.config.ece_bins),
                                "nll": negative_log_likelihood(logits, data.clean_labels)})
            reliability[label] = reliability_bins(logits, data.clean_labels, self.config.ece_bins)
        summary.update({"ece_with_trigger": calibration[0]["ece"], "nll_with_trigger": calibration[0]["nll"],
                        "ece_without_trigger": calibration[1]["ece"], "nll_without_trigger": calibration[1]["nll"]})
        figures = {"pdb_reliability": _reliability_figure(reliability),
                   "pdb_channels": {"type": "bar", "title": "PDB: CACC and ASR after each channel (Δ1 stamped first)",
                                    "xlabel": "channel", "ylabel": "rate", "x": [r["channel"] for r in rows],
                                    "series": {"CACC": [r["cacc"] for r in rows], "ASR": [r["asr"] for r in rows]}}}
        return ProbeResult(tables={"pdb_channels": rows, "pdb_calibration": calibration}, figures=figures,
                           summary=summary)

    @staticmethod
    def _scores(classifier: ZeroShotClassifier, clean: torch.Tensor, triggered: torch.Tensor,
                data: ProbeData) -> dict[str, float]:
        c_pred = batched_logits(classifier, clean).argmax(1)
        t_pred = batched_logits(classifier, triggered).argmax(1)
        return {"cacc": accuracy(c_pred, data.clean_labels),
                "asr": asr(t_pred, data.triggered_labels, data.target_class),
                "ra": robust_accuracy(t_pred, data.triggered_labels, data.target_class)}


def _trigger_left(stamped: torch.Tensor, sent: torch.Tensor, region: torch.Tensor) -> dict[str, float | None]:
    """Largest value and mean absolute change inside Δ1's patch after the channel (None: Δ1 changed nothing)."""
    if not bool(region.any()):
        return {"trigger_peak": None, "trigger_mae": None}
    mask = region.unsqueeze(1).expand_as(stamped)
    return {"trigger_peak": float(sent[mask].max()), "trigger_mae": float((sent - stamped).abs()[mask].mean())}


def _reliability_figure(bins: dict[str, list[dict[str, float]]]) -> dict:
    """Line spec: accuracy per confidence bin (x = bin centre; empty bins NaN, drawn as gaps) per input kind."""
    first = next(iter(bins.values()))
    centres = [round((b["lo"] + b["hi"]) / 2, 4) for b in first]
    series = {f"accuracy, {label}": [b["accuracy"] for b in rows] for label, rows in bins.items()}
    series["perfect calibration (baseline)"] = centres
    return {"type": "line", "title": "PDB reliability diagram on clean images (ECE bins)",
            "xlabel": "confidence", "ylabel": "accuracy", "x": centres, "series": series}
