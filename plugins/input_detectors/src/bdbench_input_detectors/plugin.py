"""Entry point: the detectors this package registers."""

from bench_core import hookimpl

from bdbench_input_detectors.strip import Strip


@hookimpl
def bdbench_register_detectors():
    return [Strip]
