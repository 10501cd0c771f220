"""Mean-ablation probe (paper Fig. 1): replace all head or all MLP direct contributions by their clean mean.

Reports CACC and ASR with no ablation, all attention heads ablated, and all MLPs ablated. Finding 1 of the
paper predicts that ablating heads kills patch (local) attacks and ablating MLPs kills blended (global) ones.
"""

from __future__ import annotations


from bench_core import Probe, ProbeData, ProbeResult, RunContext, ZeroShotClassifier
from bench_core.decomposition import Decomposition, decompose_batched
from bench_core.metrics import accuracy, asr

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
        model = classifier.model
        # a defended pipeline may transform inputs (PDB's stamp) and map outputs: honour both
        transform = classifier.input_transform or (lambda x: x)
        output_map = classifier.output_map or (lambda z: z)
        mean = decompose_batched(model, transform(ctx.require("clean_reference"))).mean()
        clean = decompose_batched(model, transform(data.clean_images))
        trig = decompose_batched(model, transform(data.triggered_images))

        def predict(d):
            return output_map(classifier.logits_from_embeddings(d.total().to(model.device))).argmax(1).cpu()

        rows, summary = [], {}
        for what in ("none", "heads", "mlps"):
            c_pred = predict(ablate_all(clean, mean, what))
            t_pred = predict(ablate_all(trig, mean, what))
            row = {"ablated": {"none": "nothing", "heads": "all AHs", "mlps": "all MLPs"}[what],
                   "cacc": accuracy(c_pred, data.clean_labels),
                   "asr": asr(t_pred, data.triggered_labels, data.target_class)}
            rows.append(row)
            summary[f"cacc_{what}"] = row["cacc"]
            summary[f"asr_{what}"] = row["asr"]
        return ProbeResult(tables={"mean_ablation": rows}, summary=summary)
