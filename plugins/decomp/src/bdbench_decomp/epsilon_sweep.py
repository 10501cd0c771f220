"""epsilon_sweep probe (paper Fig. 6): CACC and ASR of Decomp-Rep as its threshold epsilon grows.

epsilon is swept as a quantile of the clean reference's own head similarities (the paper sweeps absolute
dot-product thresholds, which do not transfer across models — SPEC §4). For each quantile the probe repairs
(a) the selected last-layer heads only and (b) the selected heads plus the late MLPs (decomp_rep's default);
MLP repair does not depend on epsilon. Everything is computed from one decomposition of the reference, the
clean images and the triggered images.

Output: table ``epsilon_sweep`` (one row per quantile: mean heads repaired per clean / triggered image, CACC
and ASR of both repairs), figure ``epsilon_sweep`` (line: x = quantile, CACC / ASR series, with the
unrepaired values as flat reference lines), summary (unrepaired CACC / ASR, the lowest ASR of each repair
and the CACC at that quantile).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from bench_core import PluginConfig, Probe, ProbeData, ProbeResult, RunContext, ZeroShotClassifier
from bench_core.decomposition import decompose_batched

from bdbench_decomp.analysis import cacc_asr, decompose_inputs
from bdbench_decomp.prototypes import default_late_layers, fit_from_decomposition
from bdbench_decomp.repair import REFERENCE_THREAT, replace_heads, replace_mlps

Quantile = Annotated[float, Field(gt=0, lt=1)]


class EpsilonSweepConfig(PluginConfig):
    # epsilon quantiles of the clean reference's similarities; bdbench's grid around decomp_rep's 0.05
    quantiles: tuple[Quantile, ...] = Field((0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3), min_length=1)
    mlp_layers: int | None = Field(None, ge=0)  # as decomp_rep: None = the paper's last 5 of 12, scaled


class EpsilonSweep(Probe):
    name = "epsilon_sweep"
    version = "0.1.0"
    Config = EpsilonSweepConfig
    threat_model = REFERENCE_THREAT
    summary = "CACC / ASR of Decomp-Rep (heads; heads + late MLPs) over epsilon quantiles (paper Fig. 6)"

    def run(self, classifier: ZeroShotClassifier, data: ProbeData, ctx: RunContext) -> ProbeResult:
        reference = decompose_batched(classifier.model, ctx.require("clean_reference"))
        clean = decompose_inputs(classifier, data.clean_images)
        trig = decompose_inputs(classifier, data.triggered_images)
        n_layers = clean.n_layers
        late = (default_late_layers(n_layers) if self.config.mlp_layers is None
                else list(range(max(0, n_layers - self.config.mlp_layers), n_layers)))

        def score(c, t) -> tuple[float, float]:
            return cacc_asr(classifier, c, t, data.clean_labels, data.triggered_labels, data.target_class)

        cacc_none, asr_none = score(clean, trig)
        rows = []
        for q in sorted(self.config.quantiles):
            protos = fit_from_decomposition(reference, q)
            mask_c, mask_t = protos.infected_heads(clean), protos.infected_heads(trig)
            heads_c, heads_t = replace_heads(clean, protos, mask_c), replace_heads(trig, protos, mask_t)
            cacc_h, asr_h = score(heads_c, heads_t)
            cacc_b, asr_b = score(replace_mlps(heads_c, protos, late), replace_mlps(heads_t, protos, late))
            rows.append({"epsilon_quantile": q,
                         "heads_per_clean_image": float(mask_c.sum(1).float().mean()),
                         "heads_per_triggered_image": float(mask_t.sum(1).float().mean()),
                         "cacc_heads": cacc_h, "asr_heads": asr_h, "cacc_heads_mlps": cacc_b, "asr_heads_mlps": asr_b})
        x = [r["epsilon_quantile"] for r in rows]
        figure = {"type": "line", "title": "Decomp-Rep over epsilon (paper Fig. 6)",
                  "xlabel": "epsilon (quantile of clean-reference similarity)", "ylabel": "rate", "x": x,
                  "series": {"CACC (heads)": [r["cacc_heads"] for r in rows],
                             "ASR (heads)": [r["asr_heads"] for r in rows],
                             "CACC (heads + MLPs)": [r["cacc_heads_mlps"] for r in rows],
                             "ASR (heads + MLPs)": [r["asr_heads_mlps"] for r in rows],
                             "CACC (no repair)": [cacc_none] * len(x),
                             "ASR (no repair)": [asr_none] * len(x)}}
        summary = {"cacc_none": cacc_none, "asr_none": asr_none}
        for repair in ("heads", "heads_mlps"):
            best = min(rows, key=lambda r: (_nan_last(r[f"asr_{repair}"]), -r[f"cacc_{repair}"]))
            summary[f"asr_{repair}_min"] = best[f"asr_{repair}"]
            summary[f"cacc_{repair}_at_min"] = best[f"cacc_{repair}"]
            summary[f"quantile_{repair}_at_min"] = best["epsilon_quantile"]
        return ProbeResult(tables={"epsilon_sweep": rows}, figures={"epsilon_sweep": figure}, summary=summary)


def _nan_last(value: float) -> float:
    return float("inf") if value != value else value
