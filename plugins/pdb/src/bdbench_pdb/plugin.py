"""Entry point: the PDB train-stage defenses and the PDB channel-robustness probe."""

from bench_core import hookimpl

from bdbench_pdb.pdb import PDB, PDBOracleReserve
from bdbench_pdb.robustness import PDBRobustness


@hookimpl
def bdbench_register_defenses():
    return [PDB, PDBOracleReserve]


@hookimpl
def bdbench_register_probes():
    return [PDBRobustness]


@hookimpl
def bdbench_metric_info():
    from bench_core.metrics import MetricInfo

    pct = dict(unit="percent", direction="none")
    return [
        MetricInfo(name="asr_*", definition="ASR of the PDB-wrapped model under one input channel (key names it)", **pct),
        MetricInfo(name="cacc_*", definition="CACC of the PDB-wrapped model under one input channel", **pct),
        MetricInfo(name="ece_with*", definition="ECE with / without Δ1 stamped", **pct),
        MetricInfo(name="nll_with*", unit="nats", direction="none", definition="NLL with / without Δ1 stamped"),
        MetricInfo(name="trigger_mae", unit="value", direction="none",
                   definition="mean absolute change of Δ1's pixels through the channel"),
        MetricInfo(name="trigger_peak", unit="value", direction="none",
                   definition="largest value of Δ1's pixels after the channel"),
    ]
