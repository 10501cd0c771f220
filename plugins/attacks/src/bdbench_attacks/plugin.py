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


@hookimpl
def bdbench_metric_info():
    """The statistics the attacks report (stored as ``attack_<key>`` next to the runner's own)."""
    from bench_core.metrics import MetricInfo

    return [
        MetricInfo(name="attack_bit_accuracy", unit="percent", direction="higher", label="bit accuracy",
                   definition="ISSBA: share of the secret's bits the decoder recovers from encoded held-out images"),
        MetricInfo(name="attack_stego_psnr_db", unit="dB", direction="higher", label="stego PSNR",
                   definition="ISSBA: PSNR of encoded vs clean held-out images at the fitted residual scale"),
        MetricInfo(name="attack_trained_psnr_db", unit="dB", direction="higher", label="trained PSNR",
                   definition="ISSBA: PSNR of the encoder's output before the residual is rescaled"),
        MetricInfo(name="attack_residual_scale", unit="ratio", direction="none", label="residual scale",
                   definition="ISSBA: factor applied to the encoder's residual to meet the PSNR budget"),
        MetricInfo(name="attack_loss_start", unit="loss", direction="none", label="loss (start)",
                   definition="BadCLIP: optimisation loss of the initial patch on a fixed batch"),
        MetricInfo(name="attack_loss_end", unit="loss", direction="lower", label="loss (end)",
                   definition="BadCLIP: optimisation loss of the final patch on the same batch"),
        MetricInfo(name="attack_target_class_fraction", unit="percent", direction="none", label="target class poisoned",
                   definition="Label-Consistent: share of the target class's fine-tune pairs poisoned"),
        MetricInfo(name="attack_n_target_pairs", unit="count", direction="none", label="target-class pairs",
                   definition="Label-Consistent: fine-tune pairs of the target class"),
        MetricInfo(name="attack_pgd_similarity_before", unit="value", direction="none", label="sim. before PGD",
                   definition="Label-Consistent: image-caption cosine similarity before PGD"),
        MetricInfo(name="attack_pgd_similarity_after", unit="value", direction="lower", label="sim. after PGD",
                   definition="Label-Consistent: image-caption cosine similarity after PGD"),
    ]
