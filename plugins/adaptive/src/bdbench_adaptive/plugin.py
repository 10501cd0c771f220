"""Entry point: the adaptive attacks and the adaptive report page."""

from bench_core import hookimpl

from bdbench_adaptive.badclip_cleanclip import BadCLIPRobust
from bdbench_adaptive.contamination import ReferenceContamination
from bdbench_adaptive.decomp_evasion import DecompEvasion
from bdbench_adaptive.detector_aware import DetectorAware, LowConfidence
from bdbench_adaptive.pdb_aware import PdbCollision, PdbHAware
from bdbench_adaptive.qi2023 import AdaptiveBlend, AdaptivePatch


@hookimpl
def bdbench_register_attacks():
    return [PdbHAware, ReferenceContamination, AdaptiveBlend, AdaptivePatch, DetectorAware, DecompEvasion,
            BadCLIPRobust, PdbCollision, LowConfidence]


@hookimpl
def bdbench_report_sections(board):
    from bdbench_adaptive.report import adaptive_sections

    return adaptive_sections(board)


@hookimpl
def bdbench_metric_info():
    """The statistics the adaptive attacks report (stored as ``attack_<key>``)."""
    from bench_core.metrics import MetricInfo

    return [
        MetricInfo(name="attack_cover_pairs", unit="count", direction="none", label="cover pairs",
                   definition="fine-tune pairs carrying a (partial) trigger with their true caption"),
        MetricInfo(name="attack_poisoned_pairs", unit="count", direction="none", label="poisoned pairs",
                   definition="fine-tune pairs whose caption the attack rewrote"),
        MetricInfo(name="attack_cover_*", unit="count", direction="none",
                   definition="detector_aware: cover pairs made with that detector's transformation"),
        MetricInfo(name="attack_h_of_target", unit="index", direction="none", label="h(target)",
                   definition="pdb_h_aware: the class index h(t) its Δ1-guess poisons name"),
        MetricInfo(name="attack_surrogate_*_loss", unit="loss", direction="none",
                   definition="badclip_robust: final loss of the surrogate repair it ran"),
    ]
