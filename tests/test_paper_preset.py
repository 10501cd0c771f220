"""The paper preset end to end on the CPU: the shipped `paper` suite with its data sources pointed at local
224-px parquet stand-ins and its weights at a local file the test writes (the ViT-B-32 architecture at small N;
hub names unchanged in the suite itself). Slow: ``make test-slow``."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from bench_core.data.standins import write_world_parquet
from bench_core.models import ModelSpec, build_model
from bench_core.runner import Runner
from bench_core.suite import Suite, load_suite

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["paper", "paper_caltech101", "paper_pets"])
def test_paper_suites_keep_the_hub_path_and_a_target_by_name(name):
    suite = load_suite(name)
    assert suite.model.arch == "ViT-B-32" and suite.data.kind == "real" and suite.pretrain is None
    assert {a.target for a in suite.attacks} == {{"paper": "banana", "paper_caltech101": "accordion",
                                                  "paper_pets": "samoyed"}[name]}


def test_the_paper_preset_runs_on_local_stand_ins(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "vit-b-32.safetensors"
    model = build_model(ModelSpec(arch="ViT-B-32", image_size=224))
    save_file({k: v.contiguous() for k, v in model.clip.state_dict().items()}, str(weights))
    raw = load_suite("paper").model_dump(mode="json", exclude_none=True)
    raw["model"]["pretrained"] = str(weights)
    raw["pretrain"] = None  # exclude_none dropped it
    raw["data"].update(
        finetune={"source": str(write_world_parquet(tmp_path / "cc3m.parquet", 96, 224, seed=1))},
        test={"source": str(write_world_parquet(tmp_path / "imagenet.parquet", 100, 224, seed=2, labelled=True))},
        heldout={"source": str(write_world_parquet(tmp_path / "held.parquet", 32, 224, seed=3))})
    raw.update(finetune={**raw["finetune"], "epochs": 1, "batch_size": 16}, device="cpu",
               attacks=[{"name": "badnet", "preset": "paper", "target": "star"}],  # a class of the stand-ins
               pipelines=[[], ["decomp_rep"]], detectors=["decomp_det"], probes=[],
               evaluation={"batch_size": 32, "detector_samples": 20, "probe_samples": 20, "retrieval": False},
               resources={"loader_workers": 2})
    suite = Suite.model_validate(raw)
    runner = Runner(suite)
    counts = runner.run()
    records = runner.store.get_many(c.key for c in runner.all_cells())
    errors = {r.key: r.error for r in records.values() if r.status != "ok"}
    assert not errors and counts == {"computed": 5, "skipped": 0, "failed": 0}, errors
    assert runner.plan.attacks[0].target_class == 3
    assert all(r.model == "ViT-B-32/" + str(weights) for r in records.values())
