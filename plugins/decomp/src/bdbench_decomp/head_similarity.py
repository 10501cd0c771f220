"""head_similarity probe (paper Fig. 5): per last-layer head, how far clean and triggered images sit from the
head's clean prototype.

For every last-layer head h: the cosine similarity S of each image's head-h contribution to the prototype
(the mean over the clean reference), for the probe's clean and triggered images. Distances per head: the
two-sample Kolmogorov–Smirnov statistic between the two similarity samples, and MMD^2 (Gaussian kernel,
median bandwidth) between the raw head contributions, as the paper's Fig. 3 head-specific MMD.

Output: table ``head_similarity`` (one row per head: mean and 10/50/90% quantiles of S for clean and
triggered, the calibrated epsilon and the fraction of each set below it, ks, mmd), figure ``head_similarity``
(density; series "clean h<i>" / "triggered h<i>", at most ``max_points`` values each), summary (mean / max
KS and MMD, the head with the largest KS, mean similarity of clean and triggered).
"""

from __future__ import annotations

import torch
from pydantic import Field

from bench_core import PluginConfig, Probe, ProbeData, ProbeResult, RunContext, ZeroShotClassifier

from bdbench_decomp.analysis import decompose_inputs, ks_distance, mmd_rbf, subsample
from bdbench_decomp.prototypes import fit_prototypes
from bdbench_decomp.repair import DEFAULT_EPSILON_QUANTILE, REFERENCE_THREAT

QUANTILES = (0.1, 0.5, 0.9)


class HeadSimilarityConfig(PluginConfig):
    epsilon_quantile: float = Field(DEFAULT_EPSILON_QUANTILE, gt=0, lt=1)  # as decomp_rep, for the below-eps columns
    max_points: int = Field(300, ge=1)  # values per density series (keeps stored payloads small)
    mmd_samples: int = Field(300, ge=2)  # images per side for MMD (its cost is quadratic)


class HeadSimilarity(Probe):
    name = "head_similarity"
    version = "0.1.0"
    Config = HeadSimilarityConfig
    threat_model = REFERENCE_THREAT
    summary = "per-head cosine similarity to the clean prototype, clean vs triggered, KS and MMD (paper Fig. 5)"

    def run(self, classifier: ZeroShotClassifier, data: ProbeData, ctx: RunContext) -> ProbeResult:
        protos = fit_prototypes(classifier.model, ctx.require("clean_reference"), self.config.epsilon_quantile)
        clean = decompose_inputs(classifier, data.clean_images)
        trig = decompose_inputs(classifier, data.triggered_images)
        s_clean, s_trig = protos.head_similarity(clean), protos.head_similarity(trig)  # (N, H), (M, H)
        pick = ctx.generator("head_similarity:subsample")
        mmd_c = torch.randperm(len(clean.heads), generator=pick)[:self.config.mmd_samples]
        mmd_t = torch.randperm(len(trig.heads), generator=pick)[:self.config.mmd_samples]
        q = torch.tensor(QUANTILES, dtype=torch.float64)
        rows, series = [], {}
        for h in range(clean.n_heads):
            a, b = s_clean[:, h].double(), s_trig[:, h].double()
            eps = float(protos.head_epsilon[h])
            row = {"head": h, "epsilon": eps}
            for label, s in (("clean", a), ("triggered", b)):
                row[f"{label}_mean"] = float(s.mean())
                for qq, v in zip(QUANTILES, torch.quantile(s, q).tolist()):
                    row[f"{label}_q{round(100 * qq)}"] = v
                row[f"{label}_below_eps"] = float((s < eps).double().mean())
            row["ks"] = ks_distance(a, b)
            row["mmd"] = mmd_rbf(clean.heads[mmd_c, -1, h], trig.heads[mmd_t, -1, h])
            rows.append(row)
            series[f"clean h{h}"] = subsample(a, self.config.max_points, pick)
            series[f"triggered h{h}"] = subsample(b, self.config.max_points, pick)
        ks = torch.tensor([r["ks"] for r in rows])
        mmd = torch.tensor([r["mmd"] for r in rows])
        summary = {"ks_mean": float(ks.mean()), "ks_max": float(ks.max()), "head_ks_max": float(ks.argmax()),
                   "mmd_mean": float(mmd.mean()), "mmd_max": float(mmd.max()),
                   "similarity_clean_mean": float(s_clean.mean()), "similarity_triggered_mean": float(s_trig.mean())}
        figure = {"type": "density", "title": "Cosine similarity to the head prototype, last layer (paper Fig. 5)",
                  "xlabel": "cosine similarity to the clean prototype", "ylabel": "density", "series": series}
        return ProbeResult(tables={"head_similarity": rows}, figures={"head_similarity": figure}, summary=summary)
