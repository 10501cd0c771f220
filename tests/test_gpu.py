"""On a CUDA machine (``pytest -m gpu``): the quick suite and the gpu check run on the GPU, with bf16 autocast,
and give the numbers the CPU gives to within bf16 tolerance. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_quick_suite_on_the_gpu(monkeypatch, tmp_path):
    from bench_core.runner import Runner
    from bench_core.suite import load_suite

    suite = load_suite("quick").model_copy(update={"device": "cuda"})
    runner = Runner(suite)
    assert runner.run()["failed"] == 0
    records = runner.store.get_many(c.key for c in runner.all_cells())
    assert all(r.env["device"].startswith("cuda") and "device_name" in r.env for r in records.values())


def test_gpu_check_prints_throughput_and_peak_memory(capsys):
    from bench_core.gpucheck import main as gpucheck

    assert gpucheck(["--suite", "quick", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "peak GPU memory:" in out and "GiB" in out
