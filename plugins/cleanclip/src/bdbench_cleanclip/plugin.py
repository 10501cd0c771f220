"""Entry point: the CleanCLIP post-training defense."""

from bench_core import hookimpl

from bdbench_cleanclip.cleanclip import CleanCLIP


@hookimpl
def bdbench_register_defenses():
    return [CleanCLIP]
