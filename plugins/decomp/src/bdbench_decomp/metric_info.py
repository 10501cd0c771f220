"""What the decomposition probes store: every table column and summary key, declared for the reports."""

from __future__ import annotations

from bench_core.metrics import MetricInfo


def _pct(name: str, direction: str, definition: str, label: str = "") -> MetricInfo:
    return MetricInfo(name=name, unit="percent", direction=direction, definition=definition, label=label)


def _val(name: str, definition: str, unit: str = "value", direction: str = "none") -> MetricInfo:
    return MetricInfo(name=name, unit=unit, direction=direction, definition=definition)


DECOMP_METRICS: list[MetricInfo] = [
    # rates (tables and summaries); ablation results are measurements, not scores: no better direction
    *(_pct(f"asr{suffix}", "none", f"ASR {what}") for suffix, what in (
        ("_none", "of the unablated model"), ("_heads", "with the heads (mean-)ablated or repaired"),
        ("_mlps", "with the MLPs mean-ablated"), ("_heads_mlps", "with heads and MLPs repaired"),
        ("_heads_min", "lowest over the epsilon sweep, heads repaired"),
        ("_heads_mlps_min", "lowest over the epsilon sweep, heads and MLPs repaired"),
        ("_all_last_layer", "with every last-layer head transplanted"), ("_selected", "with the selected heads transplanted"),
        ("_direct_*", "under one layer-ablation setting (direct effect; key names components, mode, layer)"),
        ("_total_*", "under one layer-ablation setting (total effect)"),
        ("_ensemble", "with the ensemble of prompt templates"), ("_paraphrased", "with paraphrased templates"),
        ("_single", "with a single template"), ("_spread", "max - min over template sets"))),
    *(_pct(f"cacc{suffix}", "none", f"CACC {what}") for suffix, what in (
        ("_none", "of the unablated model"), ("_heads", "with the heads ablated or repaired"),
        ("_mlps", "with the MLPs mean-ablated"), ("_heads_mlps", "with heads and MLPs repaired"),
        ("_heads_at_min", "at the sweep's lowest-ASR point, heads repaired"),
        ("_heads_mlps_at_min", "at the sweep's lowest-ASR point, heads and MLPs repaired"),
        ("_all_last_layer", "with every last-layer head transplanted"), ("_selected", "with the selected heads transplanted"),
        ("_direct_*", "under one layer-ablation setting (direct effect)"),
        ("_total_*", "under one layer-ablation setting (total effect)"),
        ("_ensemble", "with the ensemble of prompt templates"), ("_paraphrased", "with paraphrased templates"),
        ("_single", "with a single template"), ("_spread", "max - min over template sets"))),
    _pct("auroc_*", "none", "Decomp-Det AUROC with a template set (ensemble, paraphrased, single)"),
    _pct("tpr_at_5fpr_*", "none", "Decomp-Det TPR at 5% FPR with a template set"),
    _pct("decomp_det_auroc", "none", "Decomp-Det AUROC with this template set"),
    _pct("decomp_det_tpr_at_5fpr", "none", "Decomp-Det TPR at 5% FPR with this template set"),
    _pct("clean_below_eps", "none", "clean images whose head similarity falls below epsilon"),
    _pct("triggered_below_eps", "none", "triggered images whose head similarity falls below epsilon"),
    _pct("variance_fraction", "none", "share of the component's variance its TEXTSPAN texts explain"),
    _pct("clean_variance_fraction", "none", "variance of clean contributions explained by the component's texts"),
    _pct("triggered_variance_fraction", "none", "variance of triggered contributions explained by its texts"),
    _pct("variance_explained_clean_mean", "none", "mean explained variance on clean images"),
    _pct("variance_explained_triggered_mean", "none", "mean explained variance on triggered images"),
    _pct("overlap", "none", "texts shared by the clean and triggered TEXTSPAN descriptions"),
    _pct("overlap_mean*", "none", "mean clean / triggered TEXTSPAN text overlap"),
    _pct("epsilon_quantile", "none", "the clean-reference quantile epsilon is calibrated at"),
    _pct("quantile_heads_at_min", "none", "epsilon quantile of the lowest ASR (heads repaired)"),
    _pct("quantile_heads_mlps_at_min", "none", "epsilon quantile of the lowest ASR (heads and MLPs repaired)"),
    # similarities, distances, statistics
    *(_val(name, what) for name, what in (
        ("clean_mean", "mean head similarity of clean images"), ("triggered_mean", "mean head similarity of triggered images"),
        ("clean_q*", "quantile of clean head similarities"), ("triggered_q*", "quantile of triggered head similarities"),
        ("epsilon", "the head's calibrated similarity threshold"), ("ks", "Kolmogorov-Smirnov statistic, clean vs triggered"),
        ("ks_*", "Kolmogorov-Smirnov statistic summary"), ("head_ks_max", "largest per-head KS statistic"),
        ("mmd", "maximum mean discrepancy, clean vs triggered"), ("mmd_*", "maximum mean discrepancy summary"),
        ("layer_mmd_*", "largest per-layer MMD"), ("similarity_clean_mean", "mean clean head similarity"),
        ("similarity_triggered_mean", "mean triggered head similarity"),
        ("text_similarity", "similarity of the clean and triggered TEXTSPAN descriptions"),
        ("text_similarity_mean*", "mean similarity of clean and triggered TEXTSPAN descriptions"))),
    *(_val(name, what, unit="count") for name, what in (
        ("heads_per_clean_image", "heads repaired per clean image"), ("heads_per_triggered_image", "heads repaired per triggered image"),
        ("heads_per_image", "heads transplanted per image"), ("heads_selected_mean", "heads selected per image"),
        ("n_paraphrased", "paraphrased templates"), ("n_templates", "templates in the set"), ("images", "images"),
        ("n_components", "components described"), ("pool_size", "texts in the TEXTSPAN pool"),
        ("components_naming_target_*", "components whose texts name the target"),
        ("clean_names_target", "clean description names the target (1) or not (0)"),
        ("triggered_names_target", "triggered description names the target (1) or not (0)"))),
    *(_val(name, what, unit="index") for name, what in (
        ("layer", "layer index, from 0"), ("head", "head index, from 0"), ("rank", "rank of the text"))),
]
