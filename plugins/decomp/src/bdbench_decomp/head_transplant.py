"""head_transplant probe — the paper's "Decomp-Reverse" (§5.3, Table 3; ``head_reverse`` in its code).

Decomp-Rep's selected heads (last-layer heads whose cosine similarity to the clean prototype is below
epsilon) are taken from *triggered* images and pasted into the same heads of *clean* images. If the selected
heads carry the trigger, the clean images now go to the target class: ASR rises and CACC falls.

Pairing: the paper pastes each image's triggered heads into its own clean version. ProbeData's clean and
triggered images are drawn independently, so clean image i receives the heads of triggered image i mod M;
what is tested — do the selected heads alone carry the backdoor — is the same.

Output: table ``head_transplant`` with rows ``none`` (clean images as they are), ``selected`` (the paper's
row) and ``all_last_layer`` (every last-layer head pasted, an upper reference): heads pasted per image, CACC
(true labels of the clean images) and ASR (clean non-target images predicted as the target; SPEC §5's
convention, not the paper's all-image variant); summary with the same numbers.
"""

from __future__ import annotations

import torch
from pydantic import Field

from bench_core import PluginConfig, Probe, ProbeData, ProbeResult, RunContext, ZeroShotClassifier
from bench_core.metrics import accuracy, asr

from bdbench_decomp.analysis import decompose_inputs, predict
from bdbench_decomp.prototypes import fit_prototypes
from bdbench_decomp.repair import DEFAULT_EPSILON_QUANTILE, REFERENCE_THREAT, substitute_heads


class HeadTransplantConfig(PluginConfig):
    epsilon_quantile: float = Field(DEFAULT_EPSILON_QUANTILE, gt=0, lt=1)  # as decomp_rep's selection


class HeadTransplant(Probe):
    name = "head_transplant"
    version = "0.1.0"
    Config = HeadTransplantConfig
    threat_model = REFERENCE_THREAT
    summary = "paste Decomp-Rep's selected heads of triggered images into clean images (paper Decomp-Reverse)"

    def run(self, classifier: ZeroShotClassifier, data: ProbeData, ctx: RunContext) -> ProbeResult:
        if len(data.triggered_images) == 0 or len(data.clean_images) == 0:
            raise ValueError("head_transplant needs clean and triggered images")
        protos = fit_prototypes(classifier.model, ctx.require("clean_reference"), self.config.epsilon_quantile)
        clean = decompose_inputs(classifier, data.clean_images)
        trig = decompose_inputs(classifier, data.triggered_images)
        donor = torch.arange(len(clean.heads)) % len(trig.heads)
        donor_heads = trig.heads[donor, -1]  # (N, H, D)
        selected = protos.infected_heads(trig)[donor]
        variants = {"none": torch.zeros_like(selected), "selected": selected,
                    "all_last_layer": torch.ones_like(selected)}
        rows, summary = [], {}
        for label, mask in variants.items():
            preds = predict(classifier, substitute_heads(clean, donor_heads, mask))
            row = {"transplant": label, "heads_per_image": float(mask.sum(1).float().mean()),
                   "cacc": accuracy(preds, data.clean_labels), "asr": asr(preds, data.clean_labels, data.target_class)}
            rows.append(row)
            summary[f"cacc_{label}"], summary[f"asr_{label}"] = row["cacc"], row["asr"]
        summary["heads_selected_mean"] = rows[1]["heads_per_image"]
        return ProbeResult(tables={"head_transplant": rows}, summary=summary)
