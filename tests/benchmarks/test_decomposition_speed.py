"""Decomposed forward vs plain forward on the same batch (issue [1] target: <= 1.15x).

The ratio is recorded in ``extra_info``; nothing here asserts a time (speed is measured, not tested).
Run with ``make bench``.
"""


import pytest
import torch
from timing import median_seconds

from bench_core.decomposition import decompose
from bench_core.models import ModelSpec, build_model

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def default_model():
    torch.manual_seed(0)
    return build_model(ModelSpec()).eval()  # the default suite's tiny ViT



@pytest.mark.parametrize("batch", [64, 256])
def test_decomposed_vs_plain_forward(benchmark, default_model, batch):
    x = torch.rand(batch, 3, 32, 32)

    def plain():
        with torch.no_grad():
            default_model.encode_image(x)

    def decomposed():
        decompose(default_model, x)

    plain_s = median_seconds(plain)
    decomposed_s = median_seconds(decomposed)
    benchmark.extra_info["plain_ms"] = 1000 * plain_s
    benchmark.extra_info["decomposed_ms"] = 1000 * decomposed_s
    benchmark.extra_info["ratio_to_plain_forward"] = decomposed_s / plain_s
    benchmark(decomposed)
