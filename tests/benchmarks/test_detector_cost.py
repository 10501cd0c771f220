"""Detector cost: scoring a batch of 64 images vs one plain forward of the same batch, in the same run.

Each detector's time is recorded by pytest-benchmark; the plain forward is timed in the same test, and
``extra_info["ratio_to_plain_forward"]`` holds detector time / plain-forward time (compare it with
``forward_passes_per_image``: the rest is the detector's own work, e.g. TeCo's corruptions). Nothing here
asserts a time. Run with ``make bench``.
"""


import pytest
import torch
from timing import median_seconds

from bench_core import ZeroShotClassifier
from bench_core.registry import default_registry

pytestmark = pytest.mark.benchmark

BATCH = 64
DETECTORS = ["strip", "scale_up", "teco", "decomp_det"]



@pytest.fixture(scope="module")
def classifier(tiny_model, tiny_data):
    return ZeroShotClassifier.build(tiny_model, tiny_data.classnames, tiny_data.templates)


@pytest.fixture(scope="module")
def batch(tiny_data):
    """64 test-split images of the miniature world (repeated: the split is smaller than 64)."""
    images = torch.cat([tiny_data.evaluation.images, tiny_data.reference])
    return images.repeat((BATCH + len(images) - 1) // len(images), 1, 1, 1)[:BATCH].contiguous()



def test_plain_forward(benchmark, classifier, batch):
    benchmark.extra_info["ratio_to_plain_forward"] = 1.0
    benchmark(classifier.logits, batch)


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_score(benchmark, name, classifier, batch, tiny_context):
    cls = default_registry().detectors.get(name)
    detector = cls()
    detector.fit(classifier, tiny_context.restricted_to(cls.threat_model.reads))
    plain_s = median_seconds(lambda: classifier.logits(batch))
    scores = benchmark.pedantic(detector.score, args=(batch,), rounds=5, warmup_rounds=1, iterations=1)
    assert scores.shape == (BATCH,)
    detector_s = benchmark.stats.stats.median
    benchmark.extra_info["plain_forward_ms"] = 1000 * plain_s
    benchmark.extra_info["detector_ms"] = 1000 * detector_s
    benchmark.extra_info["forward_passes_per_image"] = float(detector.forward_passes_per_image())
    benchmark.extra_info["ratio_to_plain_forward"] = detector_s / plain_s
