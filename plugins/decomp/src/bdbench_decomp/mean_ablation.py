"""Mean-ablation probe (paper Fig. 1): replace all head or all MLP direct contributions by their clean mean.

Reports CACC and ASR with no ablation, all attention heads ablated, and all MLPs ablated. Finding 1 of the
paper predicts that ablating heads kills patch (local) attacks and ablating MLPs kills blended (global) ones.
"""

from __future__ import annotations


from bench_core import Probe, ProbeData, ProbeResult, RunContext, ZeroShotClassifier
from bench_core.decomposition import Decomposition

from bdbench_decomp.analysis import cacc_asr, decompose_inputs
from bdbench_decomp.repair import REFERENCE_THREAT


def ablate_all(d: Decomposition, mean: Decomposition, what: str) -> Decomposition:
    out = d.clone()
    if what == "heads":
        out.heads[:] = mean.heads
    elif what == "mlps":
        out.mlps[:] = mean.mlps
    elif what != "none":
        raise ValueError(f"unknown ablation {what!r}; allowed: none, heads, mlps")
    return out


class MeanAblation(Probe):
    name = "mean_ablation"
    version = "0.1.0"
    threat_model = REFERENCE_THREAT
    summary = "CACC / ASR with all heads or all MLPs mean-ablated (paper Fig. 1)"

    def run(self, classifier: ZeroShotClassifier, data: ProbeData, ctx: RunContext) -> ProbeResult:
        # decompose_inputs / cacc_asr honour a defended pipeline's input transform (PDB's stamp) and output map
        mean = decompose_inputs(classifier, ctx.require("clean_reference")).mean()
        clean = decompose_inputs(classifier, data.clean_images)
        trig = decompose_inputs(classifier, data.triggered_images)

        rows, summary = [], {}
        for what in ("none", "heads", "mlps"):
            cacc, asr = cacc_asr(classifier, ablate_all(clean, mean, what), ablate_all(trig, mean, what),
                                 data.clean_labels, data.triggered_labels, data.target_class)
            row = {"ablated": {"none": "nothing", "heads": "all AHs", "mlps": "all MLPs"}[what],
                   "cacc": cacc, "asr": asr}
            rows.append(row)
            summary[f"cacc_{what}"] = row["cacc"]
            summary[f"asr_{what}"] = row["asr"]
        return ProbeResult(tables={"mean_ablation": rows}, summary=summary)
