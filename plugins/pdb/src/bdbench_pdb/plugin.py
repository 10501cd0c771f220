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
