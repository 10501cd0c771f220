"""Entry point: the detectors this package registers."""

from bench_core import hookimpl

from bdbench_input_detectors.scale_up import ScaleUp
from bdbench_input_detectors.strip import Strip
from bdbench_input_detectors.teco import TeCo


@hookimpl
def bdbench_register_detectors():
    return [Strip, ScaleUp, TeCo]
