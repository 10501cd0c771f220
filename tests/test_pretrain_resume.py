"""Long trainings resume: a pretraining killed (SIGKILL) mid-run continues from its checkpoint and ends with
exactly the weights of an uninterrupted run; the checkpoint is removed once the model is stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from bench_core.cache import Cache
from bench_core.checkpoints import checkpoint_key
from bench_core.keys import clean_model_key
from bench_core.suite import load_suite

SUITE = str(Path(__file__).parent / "suites" / "scene_tiny.yaml")


def _pretrain(home: Path, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BDBENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "BDBENCH_CHECKPOINT_SECONDS": "0"}
    env.pop("BDBENCH_CRASH_AT", None)
    if crash:
        env["BDBENCH_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "bench_core.cli", "pretrain", "--suite", SUITE], env=env,
                          capture_output=True, text=True, timeout=600)


def test_killed_pretraining_resumes_to_the_same_weights(tmp_path):
    suite = load_suite(SUITE)
    key = clean_model_key(suite.model, suite.data, suite.pretrain)
    straight = _pretrain(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    # 12 steps per epoch x 3 epochs: killed in the middle of the second epoch, after a checkpoint
    killed = _pretrain(tmp_path / "killed", crash="train@17")
    assert killed.returncode != 0
    cache = Cache(tmp_path / "killed" / "cache")
    assert cache.has(checkpoint_key(key)) and not cache.has(key)
    resumed = _pretrain(tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 17 of 36" in resumed.stderr
    a, _ = Cache(tmp_path / "straight" / "cache").load(key)
    b, _ = cache.load(key)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not cache.has(checkpoint_key(key))  # removed once the model is stored


def test_a_damaged_checkpoint_means_starting_over(tmp_path):
    suite = load_suite(SUITE)
    key = clean_model_key(suite.model, suite.data, suite.pretrain)
    assert _pretrain(tmp_path, crash="train@5").returncode != 0
    cache = Cache(tmp_path / "cache")
    tensor_file = cache.root / checkpoint_key(key)[:2] / f"{checkpoint_key(key)}.safetensors"
    tensor_file.write_bytes(tensor_file.read_bytes()[:-10])
    again = _pretrain(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resuming" not in again.stderr and "damaged" in again.stderr
