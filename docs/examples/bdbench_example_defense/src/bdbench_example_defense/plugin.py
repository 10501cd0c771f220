"""Entry point: the defenses this package registers (hookimpls only, no logic)."""

from bench_core import hookimpl

from bdbench_example_defense.defense import MedianFilter


@hookimpl
def bdbench_register_defenses():
    return [MedianFilter]
