"""layer_mmd probe (paper Fig. 8 d): per layer, how far triggered images' contributions sit from clean ones.

For every layer l: MMD^2 (:func:`bdbench_decomp.analysis.mmd_rbf`: biased, Gaussian kernel, median-heuristic
bandwidth) between the clean and the triggered images' direct contributions of layer l's attention (the sum
over its heads) and, separately, of layer l's MLP. At most ``samples`` images per side enter, drawn with
``ctx.generator("layer_mmd")``; images pass through the classifier's ``input_transform``.

Output: table ``layer_mmd`` (rows layer, mmd_attn, mmd_mlp), figure ``layer_mmd`` (line over layers, series
"AHs" and "MLPs"), summary ``mmd_attn_l{l}``, ``mmd_mlp_l{l}`` and the layers with the largest values,
``layer_mmd_attn_max`` / ``layer_mmd_mlp_max``.
"""

from __future__ import annotations

import torch
from pydantic import Field

from bench_core import PluginConfig, Probe, ProbeData, ProbeResult, RunContext, ThreatModel, ZeroShotClassifier

from bdbench_decomp.analysis import decompose_inputs, mmd_rbf


class LayerMmdConfig(PluginConfig):
    samples: int = Field(300, ge=2)  # images per side; MMD's cost is quadratic in it


class LayerMmd(Probe):
    name = "layer_mmd"
    version = "0.1.0"
    Config = LayerMmdConfig
    threat_model = ThreatModel(data="the evaluation images the runner hands to probes", knowledge="none",
                               reads=frozenset())
    summary = "per-layer MMD^2 between clean and triggered attention / MLP contributions (paper Fig. 8d)"

    def run(self, classifier: ZeroShotClassifier, data: ProbeData, ctx: RunContext) -> ProbeResult:
        pick = ctx.generator("layer_mmd")
        clean_i = torch.randperm(len(data.clean_images), generator=pick)[:self.config.samples]
        trig_i = torch.randperm(len(data.triggered_images), generator=pick)[:self.config.samples]
        clean = decompose_inputs(classifier, data.clean_images[clean_i])
        trig = decompose_inputs(classifier, data.triggered_images[trig_i])
        rows = [{"layer": l,
                 "mmd_attn": mmd_rbf(clean.heads[:, l].sum(1), trig.heads[:, l].sum(1)),
                 "mmd_mlp": mmd_rbf(clean.mlps[:, l], trig.mlps[:, l])} for l in range(clean.n_layers)]
        summary = {}
        for key in ("attn", "mlp"):
            values = torch.tensor([r[f"mmd_{key}"] for r in rows])
            summary.update({f"mmd_{key}_l{r['layer']}": r[f"mmd_{key}"] for r in rows})
            summary[f"layer_mmd_{key}_max"] = float(values.argmax())
        figure = {"type": "line", "title": "MMD^2 clean vs triggered per layer (paper Fig. 8d)", "xlabel": "layer",
                  "ylabel": "MMD^2", "x": [r["layer"] for r in rows],
                  "series": {"AHs": [r["mmd_attn"] for r in rows], "MLPs": [r["mmd_mlp"] for r in rows]}}
        return ProbeResult(tables={"layer_mmd": rows}, figures={"layer_mmd": figure}, summary=summary)
