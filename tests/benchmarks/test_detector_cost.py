"""Detector cost: scoring a batch of 64 images vs one plain forward of the same batch, in the same run, on
the tests' miniature model and on the default suite's tiny ViT.

Each detector's time is recorded by pytest-benchmark; the plain forward is timed in the same test, and
``extra_info["ratio_to_plain_forward"]`` holds detector time / plain-forward time (compare it with
``forward_passes_per_image``: the rest is the detector's own work, e.g. TeCo's corruptions). The plain forward
is fp32; STRIP, SCALE-UP and TeCo run theirs under their ``precision`` (bf16 by default), so on a bf16-capable
CPU their ratio can come in under their pass count. Nothing here asserts a time. Run with ``make bench``.
"""


import pytest
import torch
from timing import median_seconds

from bench_core import ZeroShotClassifier
from bench_core.registry import default_registry
from conftest import make_context

pytestmark = pytest.mark.benchmark

BATCH = 64
DETECTORS = ["strip", "scale_up", "teco", "decomp_det"]



@pytest.fixture(scope="module", params=["miniature", "default"])
def setting(request, tiny_model, tiny_data):
    """(classifier, batch of 64 images, context): the tests' miniature model and world, or the default suite's
    tiny ViT (6 x 128, 32 px; untrained: the cost does not depend on the weights) on a small 32 px world."""
    if request.param == "miniature":
        model, data = tiny_model, tiny_data
    else:
        from bench_core.data.bundle import DataBundle
        from bench_core.models import ModelSpec, build_model
        from bench_core.suite import WorldData

        torch.manual_seed(0)
        model = build_model(ModelSpec()).eval()
        data = DataBundle(WorldData(n_pretrain=10, n_finetune=10, n_test=400, n_heldout=10, n_retrieval=10), 32)
    images = torch.cat([data.evaluation.images, data.reference])
    batch = images.repeat((BATCH + len(images) - 1) // len(images), 1, 1, 1)[:BATCH].contiguous()
    return ZeroShotClassifier.build(model, data.classnames, data.templates), batch, make_context(data, model=model)


def test_plain_forward(benchmark, setting):
    classifier, batch, _ = setting
    benchmark.extra_info["ratio_to_plain_forward"] = 1.0
    benchmark(classifier.logits, batch)


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_score(benchmark, name, setting):
    classifier, batch, context = setting
    cls = default_registry().detectors.get(name)
    detector = cls()
    detector.fit(classifier, context.restricted_to(cls.threat_model.reads))
    plain_s = median_seconds(lambda: classifier.logits(batch))
    scores = benchmark.pedantic(detector.score, args=(batch,), rounds=5, warmup_rounds=1, iterations=1)
    assert scores.shape == (BATCH,)
    detector_s = benchmark.stats.stats.median
    benchmark.extra_info["plain_forward_ms"] = 1000 * plain_s
    benchmark.extra_info["detector_ms"] = 1000 * detector_s
    benchmark.extra_info["forward_passes_per_image"] = float(detector.forward_passes_per_image())
    benchmark.extra_info["precision"] = getattr(detector.config, "precision", "fp32")
    benchmark.extra_info["ratio_to_plain_forward"] = detector_s / plain_s
