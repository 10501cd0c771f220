"""Entry point: the attacks this package registers."""

from bench_core import hookimpl

from bdbench_attacks.badnet import BadNet
from bdbench_attacks.blended import Blended


@hookimpl
def bdbench_register_attacks():
    return [BadNet, Blended]
