"""Entry point: the attacks this package registers."""

from bench_core import hookimpl

from bdbench_attacks.badclip import BadCLIP
from bdbench_attacks.badnet import BadNet
from bdbench_attacks.blended import Blended
from bdbench_attacks.issba import ISSBA
from bdbench_attacks.label_consistent import LabelConsistent


@hookimpl
def bdbench_register_attacks():
    return [BadNet, Blended, LabelConsistent, ISSBA, BadCLIP]
