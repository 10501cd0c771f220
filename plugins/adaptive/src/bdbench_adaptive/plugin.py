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
