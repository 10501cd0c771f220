"""Shared fixtures: a hermetic BDBENCH_HOME, a miniature world and an untrained miniature CLIP.

Nothing here downloads: the world is generated, the model is built from a config (open_clip's test style).
"""

from __future__ import annotations


import pytest
import torch

from bench_core.data.bundle import DataBundle
from bench_core.interfaces import RunContext
from bench_core.models import ModelSpec, build_model

TINY_SPEC = ModelSpec(arch="tiny", image_size=16, patch_size=8, width=32, layers=2, heads=4, text_width=32,
                      text_layers=1, text_heads=2, embed_dim=32, context_length=16)
TINY_WORLD = dict(kind="world", image_size=16, n_pretrain=60, n_finetune=80, n_test=50, n_heldout=30)


# Tiny models gain nothing from a second thread, and on a shared 2-core machine two threads per process can be
# many times slower than one (thread oversubscription); results also differ slightly between thread counts.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _hermetic_home(tmp_path, monkeypatch):
    """Every test gets its own cache and results store."""
    monkeypatch.setenv("BDBENCH_HOME", str(tmp_path / "bdbench_home"))
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    return build_model(TINY_SPEC).eval()


@pytest.fixture(scope="session")
def tiny_data() -> DataBundle:
    from bench_core.suite import WorldData

    return DataBundle(WorldData(**{k: v for k, v in TINY_WORLD.items()}), TINY_SPEC.image_size)


def make_context(data: DataBundle, seed: int = 0, model=None, **fields) -> RunContext:
    """A full context over the miniature world (tests restrict it themselves when needed)."""
    return RunContext(seed=seed, device=torch.device("cpu"), classnames=data.classnames, templates=data.templates,
                      write_caption=data.caption_writer(), clean_model=model, finetune_pairs=data.finetune,
                      clean_reference=data.reference, heldout=data.heldout, **fields)


@pytest.fixture
def tiny_context(tiny_data, tiny_model) -> RunContext:
    return make_context(tiny_data, model=tiny_model)
