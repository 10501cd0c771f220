"""ISSBA (Li et al., ICCV 2021): an invisible, sample-specific additive trigger from a steganography encoder.

``prepare`` trains a small StegaStamp-like encoder–decoder from scratch on the attacker's fine-tune images
(:mod:`bdbench_attacks.stegastamp`) with every residual held at the PSNR budget's energy (the attack's
strength, the same for every seed), draws one fixed secret bit-string per seed, rescales the residual so that
held-out fine-tune images sit exactly on the budget after clamping to [0, 1], and measures there how well the
decoder recovers the secret. The encoder weights and the scale are the cached state; the trigger of an image
is ``clamp(x + scale * encoder(x, secret), 0, 1)``, a different residual for every image. Poisoning is the
default: a random subset, captions naming the target.
"""

from __future__ import annotations

import torch
from pydantic import Field

from bench_core import Attack, AttackConfig, RunContext, ThreatModel

from bdbench_attacks.stegastamp import (
    Decoder, Encoder, StegaReport, StegaSettings, encode, evaluate_stego, scale_for_psnr, train_stegastamp,
)

_PREFIX = "encoder."


class ISSBAConfig(AttackConfig):
    secret_bits: int = Field(20, ge=1)  # BackdoorBox ISSBA on 32 px CIFAR-10: 20 bits (ISSBA/StegaStamp 224 px: 100)
    width: int = Field(8, ge=1)  # encoder/decoder base channels; 8 keeps training ~30 s on one CPU core (measured)
    steps: int = Field(2000, ge=1)  # at the 30 dB budget, seeds 0-2: bit accuracy 1.00 / 0.96 / 1.00
    batch_size: int = Field(32, ge=1)  # small batches, many steps: the CPU cost is per pixel
    lr: float = Field(3e-3, gt=0)  # Adam; StegaStamp's 1e-4 is for 140k steps
    # The trigger's strength, as an attack budget (like an epsilon, the same for every seed): the held-out
    # stego PSNR. 30 dB is issue [2]'s invisibility target. None keeps the trained residual as it comes.
    psnr_budget_db: float | None = Field(30.0, gt=0)
    # How the budget is met. True: every residual is held at the budget's RMS while training (the encoder
    # learns the most decodable pattern of that energy), then a final rescale absorbs the clamp to [0, 1].
    # False: train with the L2 penalty below, then rescale the trained residual to the budget.
    # Measured at 30 dB, ASR seeds 0-2: trained at the budget 88.8 / 94.9 / 88.4% (with code_grid 4, 2,000
    # steps); trained with the penalty and rescaled 71.8 / 69.0 / 42.8% (code_grid 8, 1,000 steps).
    train_at_budget: bool = True
    # Side of the secret's dense map, upsampled to the image. StegaStamp maps its secret to 50 x 50 for
    # 400 px images (8x); 4 does the same for the 32 px world. Grid 8 at the 30 dB budget: 68.9 / 93.8 / 83.7%.
    code_grid: int = Field(4, ge=1)
    # Residual MSE weight when train_at_budget is false (a held residual's mean square is constant, so the
    # penalty would do nothing). Weight 30 gave 27.1 / 29.5 / 28.5 dB by seed before rescaling; a weaker
    # weight rescaled to 30 dB does worse (10: bit accuracy 0.82, ASR 15.8% at seed 0).
    l2_weight: float = Field(0.0, ge=0)
    l2_start: float = Field(0.15, ge=0, le=1)  # bit loss alone first (StegaStamp ramps its image losses too)
    l2_full: float = Field(0.6, ge=0, le=1)  # the L2 weight then rises over (0.6 - 0.15) of the steps
    l2_gate: float = Field(0.9, ge=0, le=1)  # ... once the decoder reads 90% of the training bits (ours:
    # a fixed schedule collapsed the residual to zero on small data before the decoder had learned)
    n_held: int = Field(256, ge=1)  # fine-tune images held out of training to measure bit accuracy and PSNR
    batch_size_apply: int = Field(256, ge=1)  # images encoded per forward pass when stamping (memory only)


class ISSBA(Attack):
    """Sample-specific invisible residual from a trained encoder (StegaStamp-like)."""

    name = "issba"
    version = "0.3.0"
    Config = ISSBAConfig
    locality = "global"
    summary = "sample-specific invisible residual from a steganography encoder (Li et al., 2021)"
    threat_model = ThreatModel(data="poisons a fraction of the fine-tune pairs; trains its encoder on their images",
                               reads=frozenset({"finetune_pairs"}))
    presets = {
        # ISSBA / StegaStamp on 224 px: a 100-bit secret, a wider network, the secret's map upsampled 8x
        # (224 / 28); 1,500 of 500K pairs poisoned. Not run by us at 224 px (needs a GPU): the step count and
        # lr are a starting point, check the metrics. The 30 dB budget (the class default) applies here too.
        "paper": {"secret_bits": 100, "width": 32, "steps": 20000, "lr": 1e-3, "code_grid": 28,
                  "poison_rate": 0.003},
        # 0.2.0's default: trained with the L2 penalty, rescaled to 27 dB (seeds 0-2: 90.0 / 89.2 / 94.2% ASR)
        "penalty27": {"psnr_budget_db": 27.0, "train_at_budget": False, "l2_weight": 30.0, "steps": 1000,
                      "code_grid": 8},
        # the quick suite's 16 px miniature world (numbers mean nothing)
        "quick": {"steps": 60, "n_held": 16},
    }

    def __init__(self, config=None):
        super().__init__(config)
        self._encoder: Encoder | None = None

    def settings(self) -> StegaSettings:
        c = self.config
        return StegaSettings(bits=c.secret_bits, width=c.width, steps=c.steps, batch_size=c.batch_size, lr=c.lr,
                             l2_weight=c.l2_weight, l2_start=c.l2_start, l2_full=c.l2_full, l2_gate=c.l2_gate,
                             fixed_rms=self._fixed_rms(), code_grid=c.code_grid)

    def _fixed_rms(self) -> float | None:
        """The residual RMS the encoder is held at (train_at_budget), or None for a free residual."""
        c = self.config
        if not c.train_at_budget:
            return None
        if c.psnr_budget_db is None:
            raise ValueError("issba: train_at_budget needs a psnr_budget_db (set one, or train_at_budget: false)")
        return 10 ** (-c.psnr_budget_db / 20)  # PSNR = -20 log10(RMS) for images in [0, 1]

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        images = ctx.require("finetune_pairs").images
        n_held = min(self.config.n_held, max(1, len(images) // 5))
        order = torch.randperm(len(images), generator=ctx.generator("issba:split"))
        held, train = images[order[:n_held]], images[order[n_held:]]
        secret = torch.randint(0, 2, (self.config.secret_bits,), generator=ctx.generator("issba:secret")).float()
        encoder, decoder, report = train_stegastamp(train, held, secret, self.settings(),
                                                    ctx.generator("issba:train"), ctx.device)
        scale, bit_accuracy, psnr_db = self._fit_budget(encoder, decoder, held, secret, report)
        state = {_PREFIX + k: v.detach().clone() for k, v in encoder.state_dict().items()}
        state["secret"] = secret
        state["scale"] = torch.tensor(scale)
        state["metric_bit_accuracy"] = torch.tensor(bit_accuracy)
        # not "metric_psnr_db": the runner reports its own attack_psnr_db (test split), which that would overwrite
        state["metric_stego_psnr_db"] = torch.tensor(psnr_db)
        state["metric_trained_psnr_db"] = torch.tensor(report.psnr_db)  # before rescaling to the budget
        state["metric_residual_scale"] = torch.tensor(scale)
        return state

    def _fit_budget(self, encoder: Encoder, decoder: Decoder, held: torch.Tensor, secret: torch.Tensor,
                    report: StegaReport) -> tuple[float, float, float]:
        """(scale, bit accuracy, PSNR) of the residual rescaled to the PSNR budget, on the held-out images."""
        if self.config.psnr_budget_db is None:
            return 1.0, report.bit_accuracy, report.psnr_db
        scale = scale_for_psnr(encoder, held, secret, self.config.psnr_budget_db)
        bit_accuracy, psnr_db, _ = evaluate_stego(encoder, decoder, held, secret, scale)
        return scale, bit_accuracy, psnr_db

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state(state)
        encoder = Encoder(self.config.secret_bits, self.config.width, self.config.code_grid, rms=self._fixed_rms())
        encoder.load_state_dict({k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)})
        self._encoder = encoder.eval()

    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        if self._encoder is None:
            raise RuntimeError("issba: no encoder; call load_state(prepare(ctx)) first")
        encoder = self._encoder.to(images.device)
        secret = self.state["secret"].to(images.device)
        scale = float(self.state["scale"])
        step = self.config.batch_size_apply
        with torch.no_grad():
            out = [encode(encoder, images[i:i + step].float(), secret, scale)
                   for i in range(0, len(images), step)]
        return torch.cat(out).to(images.dtype) if out else images.clone()
