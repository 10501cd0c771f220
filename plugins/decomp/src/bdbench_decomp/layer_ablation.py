"""layer_ablation probe (paper Fig. 2 and Fig. 8 a–c): layer-wise mean-ablation of attention heads and MLPs.

For each component kind (all heads of a layer together, "AHs", or the layer's MLP, "MLPs"), each mode and each
layer l of an L-layer tower, the ablated layers are

- forward: 0..l (Fig. 2 a),
- backward: l..L-1 (Fig. 2 b),
- separate: l alone (Fig. 2 c),

and CACC (clean images) and ASR (triggered non-target images) are measured with them mean-ablated. Two effects:

- ``direct`` (the paper's): the ablated layers' direct contributions in the decomposition are replaced by their
  mean over the clean reference, as ``mean_ablation`` does for all layers; nothing else changes.
- ``total``: inside the forward pass each ablated component's residual-stream output (every token) is replaced
  by its per-token mean over the clean reference in the unablated model, so later layers see the replacement.

All images (reference included) pass through the classifier's ``input_transform``; logits through its
``output_map``. Output: table ``layer_ablation`` (rows effect, ablated, mode, layer, cacc, asr), one line figure
``{effect}_{heads|mlps}`` over the layers (ASR and CACC per mode, unablated as baseline), and a flat summary: ``cacc_none`` / ``asr_none`` (unablated) and
``{cacc|asr}_{effect}_{heads|mlps}_{mode}_l{layer}``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from bench_core import PluginConfig, Probe, ProbeData, ProbeResult, RunContext, ZeroShotClassifier
from bench_core.decomposition import Decomposition, decompose_batched, mean_component_outputs

from bdbench_decomp.analysis import as_model_sees, cacc_asr
from bdbench_decomp.repair import REFERENCE_THREAT

Effect = Literal["direct", "total"]
MODES = ("forward", "backward", "separate")
KINDS = {"heads": ("attn", "AHs"), "mlps": ("mlp", "MLPs")}
"""summary key -> (decomposition component kind, table / figure label)."""


def ablated_layers(mode: str, layer: int, n_layers: int) -> tuple[int, ...]:
    """The layers a ``mode`` ablation at ``layer`` removes."""
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} out of range for {n_layers} layers")
    if mode == "forward":
        return tuple(range(layer + 1))
    if mode == "backward":
        return tuple(range(layer, n_layers))
    if mode == "separate":
        return (layer,)
    raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")


def ablate_layers(d: Decomposition, mean: Decomposition, kind: str, layers: tuple[int, ...]) -> Decomposition:
    """A copy of ``d`` whose heads (``kind`` "attn") or MLPs ("mlp") of ``layers`` are ``mean``'s (batch of 1)."""
    out = d.clone()
    index = list(layers)
    if kind == "attn":
        out.heads[:, index] = mean.heads[:, index]
    elif kind == "mlp":
        out.mlps[:, index] = mean.mlps[:, index]
    else:
        raise ValueError(f"unknown component kind {kind!r}; allowed: attn, mlp")
    return out


class LayerAblationConfig(PluginConfig):
    effects: tuple[Effect, ...] = Field(("direct", "total"), min_length=1)  # direct = the paper's Fig. 2
    batch_size: int = Field(256, ge=1)  # images per decomposition pass


class LayerAblation(Probe):
    name = "layer_ablation"
    version = "0.1.0"
    Config = LayerAblationConfig
    threat_model = REFERENCE_THREAT
    summary = "CACC / ASR with heads or MLPs mean-ablated layer-wise: forward, backward, separate (paper Fig. 2, 8)"

    def run(self, classifier: ZeroShotClassifier, data: ProbeData, ctx: RunContext) -> ProbeResult:
        model, batch = classifier.model, self.config.batch_size
        reference = as_model_sees(classifier, ctx.require("clean_reference"))
        clean_x = as_model_sees(classifier, data.clean_images)
        trig_x = as_model_sees(classifier, data.triggered_images)

        def score(clean: Decomposition, trig: Decomposition) -> tuple[float, float]:
            return cacc_asr(classifier, clean, trig, data.clean_labels, data.triggered_labels, data.target_class)

        clean, trig = decompose_batched(model, clean_x, batch), decompose_batched(model, trig_x, batch)
        cacc0, asr0 = score(clean, trig)
        summary = {"cacc_none": cacc0, "asr_none": asr0}
        rows, figures = [], {}
        for effect in dict.fromkeys(self.config.effects):
            if effect == "direct":
                mean = decompose_batched(model, reference, batch).mean()

                def ablated(kind: str, layers: tuple[int, ...]) -> tuple[Decomposition, Decomposition]:
                    return ablate_layers(clean, mean, kind, layers), ablate_layers(trig, mean, kind, layers)
            else:
                outputs = mean_component_outputs(model, reference, batch)

                def ablated(kind: str, layers: tuple[int, ...]) -> tuple[Decomposition, Decomposition]:
                    overrides = {(kind, l): outputs[(kind, l)] for l in layers}
                    return (decompose_batched(model, clean_x, batch, overrides),
                            decompose_batched(model, trig_x, batch, overrides))
            for key, (kind, label) in KINDS.items():
                cache: dict[tuple[int, ...], tuple[float, float]] = {}  # forward l=L-1 == backward l=0, etc.
                series: dict[str, list[float]] = {}
                for mode in MODES:
                    for layer in range(clean.n_layers):
                        layers = ablated_layers(mode, layer, clean.n_layers)
                        if layers not in cache:
                            cache[layers] = score(*ablated(kind, layers))
                        cacc, asr = cache[layers]
                        rows.append({"effect": effect, "ablated": label, "mode": mode, "layer": layer,
                                     "cacc": cacc, "asr": asr})
                        summary[f"cacc_{effect}_{key}_{mode}_l{layer}"] = cacc
                        summary[f"asr_{effect}_{key}_{mode}_l{layer}"] = asr
                        series.setdefault(f"ASR {mode}", []).append(asr)
                        series.setdefault(f"CACC {mode}", []).append(cacc)
                series["ASR baseline"] = [asr0] * clean.n_layers
                series["CACC baseline"] = [cacc0] * clean.n_layers
                figures[f"{effect}_{key}"] = {
                    "type": "line", "title": f"{label} mean-ablated layer-wise, {effect} effect (paper Fig. 2, 8)",
                    "xlabel": "layer", "ylabel": "rate", "x": list(range(clean.n_layers)), "series": series}
        return ProbeResult(tables={"layer_ablation": rows}, figures=figures, summary=summary)
