"""Entry point: the decomposition defenses, detector and probes this package registers."""

from bench_core import hookimpl

from bdbench_decomp.ablations import ABLATIONS
from bdbench_decomp.decomp_det import DecompDet
from bdbench_decomp.decomp_rep import DecompRep, DecompRepOracle
from bdbench_decomp.epsilon_sweep import EpsilonSweep
from bdbench_decomp.head_similarity import HeadSimilarity
from bdbench_decomp.head_transplant import HeadTransplant
from bdbench_decomp.layer_ablation import LayerAblation
from bdbench_decomp.layer_mmd import LayerMmd
from bdbench_decomp.mean_ablation import MeanAblation
from bdbench_decomp.prompt_sensitivity import PromptSensitivity
from bdbench_decomp.textspan import TextSpan


@hookimpl
def bdbench_register_defenses():
    return [DecompRep, DecompRepOracle, *ABLATIONS]


@hookimpl
def bdbench_register_detectors():
    return [DecompDet]


@hookimpl
def bdbench_register_probes():
    return [MeanAblation, LayerAblation, LayerMmd, EpsilonSweep, HeadSimilarity, HeadTransplant, TextSpan,
            PromptSensitivity]


@hookimpl
def bdbench_report_sections(board):
    from bdbench_decomp.findings import findings_sections

    return findings_sections(board)


@hookimpl
def bdbench_metric_info():
    from bdbench_decomp.metric_info import DECOMP_METRICS

    return DECOMP_METRICS
