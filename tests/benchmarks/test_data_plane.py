"""The lazy data plane at paper shape (224 px local parquet), measured in one run; nothing asserts a time.

- Memory: a paper-shaped suite (a small ViT at 224 px / patch 32 with pretrained weights from a local file, one
  fine-tune epoch, BadNet, no defense) over 1,000 and over 4,000 fine-tune pairs, each run in its own process
  under ``/usr/bin/time -v``: peak resident memory of the larger run over the smaller's (target: <= 1.25).
- Speed: zero-shot evaluation over a lazy 224-px parquet split vs the same images pre-decoded into a tensor,
  same model (the ViT-B-32 architecture, random weights) and batch size (target: >= 0.8x the throughput).

Run with ``make bench``; the ratios go to ``extra_info``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import save_file

from bench_core.data.loaders import SourceSpec, load_labelled
from bench_core.data.standins import write_world_parquet
from bench_core.models import ModelSpec, build_model
from bench_core.zeroshot import ZeroShotClassifier, batched_logits

pytestmark = pytest.mark.benchmark

SMALL_224 = {"arch": "tiny", "image_size": 224, "patch_size": 32, "width": 128, "layers": 4, "heads": 4,
             "text_width": 128, "text_layers": 2, "text_heads": 4, "embed_dim": 128, "context_length": 16}


def _suite(tmp_path, n_finetune: int, test, held, weights) -> str:
    ft = write_world_parquet(tmp_path / f"ft{n_finetune}.parquet", n_finetune, 224, seed=1)
    raw = {"name": f"memory{n_finetune}", "model": {**SMALL_224, "pretrained": str(weights)},
           "data": {"kind": "real", "finetune": {"source": str(ft)}, "test": {"source": str(test)},
                    "heldout": {"source": str(held)}},
           "pretrain": None, "finetune": {"epochs": 1, "lr": 1e-4, "batch_size": 64},
           "attacks": [{"name": "badnet", "preset": "paper"}], "pipelines": [[]],
           "evaluation": {"retrieval": False, "batch_size": 64}, "device": "cpu"}
    path = tmp_path / f"memory{n_finetune}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _peak_rss_mib(suite: str, home) -> float:
    env = {**os.environ, "BDBENCH_HOME": str(home), "HF_DATASETS_CACHE": str(home / "hf")}
    out = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "bench_core.cli", "run", "--suite", suite],
                         env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024


@pytest.mark.skipif(not os.path.exists("/usr/bin/time"), reason="needs /usr/bin/time (Debian package time)")
def test_peak_memory_at_4x_the_fine_tune_pairs(benchmark, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(ModelSpec(**SMALL_224)).clip.state_dict().items()},
              str(weights))
    test = write_world_parquet(tmp_path / "test.parquet", 300, 224, seed=2, labelled=True)
    held = write_world_parquet(tmp_path / "held.parquet", 100, 224, seed=3)
    small = _peak_rss_mib(_suite(tmp_path, 1000, test, held, weights), tmp_path / "home1000")
    large = _peak_rss_mib(_suite(tmp_path, 4000, test, held, weights), tmp_path / "home4000")
    benchmark.extra_info.update(peak_rss_mib_1000_pairs=small, peak_rss_mib_4000_pairs=large,
                                peak_rss_ratio_4x_data=large / small)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_zero_shot_throughput_lazy_parquet_vs_decoded_tensors(benchmark, tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="ViT-B-32", image_size=224)).eval()
    path = write_world_parquet(tmp_path / "eval.parquet", 512, 224, seed=4, labelled=True)
    lazy, _, names = load_labelled(SourceSpec(source=str(path)), 224)
    decoded = lazy.materialize()
    clf = ZeroShotClassifier.build(model, names, ("a photo of a {}.",))
    batch = 128

    def throughput(images, workers=0) -> float:
        batched_logits(clf, images[:batch], batch)  # warm-up
        started = time.perf_counter()
        batched_logits(clf, images, batch, loader_workers=workers)
        return len(images) / (time.perf_counter() - started)

    tensors = throughput(decoded)
    in_process = throughput(lazy)
    workers = throughput(lazy, workers=1)
    benchmark.extra_info.update(images_per_s_decoded_tensors=tensors, images_per_s_lazy_in_process=in_process,
                                images_per_s_lazy_1_loader_worker=workers,
                                ratio_lazy_vs_tensors=in_process / tensors,
                                ratio_lazy_1_worker_vs_tensors=workers / tensors)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
