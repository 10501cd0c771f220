"""One contrastive training step of the default suite's tiny CLIP: the loop's bf16 numerics vs plain fp32.

Both steps go through ``train_contrastive`` (batch 256, the default suite's fine-tune batch); the fp32 step also
keeps the loop's other speed-ups (math attention kernel on the CPU, used token rows only), so the ratio isolates
bf16 autocast. A third variant measures the full-table fp32 step the loop ran before those speed-ups, as a
hand-written reference loop. Ratios go to ``extra_info``; nothing asserts a time. Run with ``make bench``.
"""

import pytest
import torch
from timing import median_seconds

from bench_core.models import ModelSpec, build_model
from bench_core.training import TrainConfig, _adamw, clip_loss, train_contrastive

pytestmark = pytest.mark.benchmark

BATCH = 256
STEPS = 3


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    model = build_model(ModelSpec())
    captions = [f"a {c} {s}" for c in ("red", "blue", "green", "purple") for s in ("circle", "star", "square")]
    captions = [captions[i % len(captions)] for i in range(BATCH * STEPS)]
    return model, torch.rand(BATCH * STEPS, 3, 32, 32), captions


def _loop(model, images, captions, precision):
    config = TrainConfig(epochs=1, batch_size=BATCH, augment=False, precision=precision, warmup_fraction=0)
    train_contrastive(model, images, captions, config, seed=0)


def _reference_fp32(model, images, captions):
    """The pre-speed-up step: default attention kernel, fp32, AdamW over the whole token table."""
    config = TrainConfig(epochs=1, batch_size=BATCH, precision="fp32")
    optimizer = _adamw(model, config)
    tokens = model.tokenize(captions)
    model.train()
    for b in range(STEPS):
        sl = slice(b * BATCH, (b + 1) * BATCH)
        loss = clip_loss(model.encode_image(images[sl]), model.encode_text(tokens[sl]), model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def test_training_step_bf16_vs_fp32(benchmark, batch):
    model, images, captions = batch
    reference = median_seconds(lambda: _reference_fp32(model, images, captions), repeats=3) / STEPS
    fp32 = median_seconds(lambda: _loop(model, images, captions, "fp32"), repeats=3) / STEPS
    bf16 = median_seconds(lambda: _loop(model, images, captions, "bf16"), repeats=3) / STEPS
    benchmark.extra_info["reference_fp32_ms_per_step"] = 1000 * reference
    benchmark.extra_info["loop_fp32_ms_per_step"] = 1000 * fp32
    benchmark.extra_info["loop_bf16_ms_per_step"] = 1000 * bf16
    benchmark.extra_info["speedup_bf16_loop_vs_reference"] = reference / bf16
    benchmark.extra_info["speedup_fp32_loop_vs_reference"] = reference / fp32
    benchmark.pedantic(lambda: _loop(model, images, captions, "bf16"), rounds=1, iterations=1)
