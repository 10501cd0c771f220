"""A real-data suite end to end on local parquet stand-ins: lazy images, overlays, CLIP's ImageNet templates."""

from __future__ import annotations

import torch
import yaml
from safetensors.torch import save_file

from bench_core.data.bundle import clip_imagenet_templates
from bench_core.data.images import EncodedImages, MappedImages, OverlayImages, SubsetImages
from bench_core.data.standins import write_world_parquet
from bench_core.models import ModelSpec, build_model
from bench_core.runner import Runner
from bench_core.suite import Suite
from bench_core.workspace import Workspace

QUICK = yaml.safe_load(open("bench_core/suites/quick.yaml"))


def real_suite(tmp_path, n_finetune: int = 120, templates=None) -> Suite:
    spec = ModelSpec(**QUICK["model"])
    torch.manual_seed(0)
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(spec).clip.state_dict().items()}, str(weights))
    data = {"kind": "real",
            "finetune": {"source": str(write_world_parquet(tmp_path / "ft.parquet", n_finetune, 16, seed=1))},
            "test": {"source": str(write_world_parquet(tmp_path / "test.parquet", 60, 16, seed=2, labelled=True))},
            "heldout": {"source": str(write_world_parquet(tmp_path / "held.parquet", 40, 16, seed=3))}}
    if templates:
        data["templates"] = templates
    return Suite.model_validate({
        **QUICK, "name": "real", "data": data, "pretrain": None,
        "model": {**QUICK["model"], "pretrained": str(weights)},
        "pipelines": [[], ["decomp_rep"], ["pdb"]], "detectors": ["decomp_det"], "probes": []})


def test_a_real_data_suite_runs_end_to_end_on_lazy_columns(tmp_path):
    suite = real_suite(tmp_path)
    runner = Runner(suite)
    counts = runner.run()
    records = runner.store.get_many(c.key for c in runner.all_cells())
    errors = {r.key: r.error for r in records.values() if r.status != "ok"}
    assert not errors and counts["computed"] == len(runner.all_cells()), errors
    ws = Workspace(suite)
    assert isinstance(ws.data.finetune.images, EncodedImages)  # nothing decoded ahead
    assert isinstance(ws.data.evaluation.images, SubsetImages)
    assert isinstance(ws.data.reference, torch.Tensor) and len(ws.data.reference) == 10  # 20% of 6 per class
    attack = runner.plan.attacks[0]
    poisoned = ws.poisoning(attack, 0).pairs.images
    assert isinstance(poisoned, OverlayImages) and len(poisoned.replacement) == 6  # 5% of 120: only those held
    assert isinstance(ws.triggered(attack, 0), MappedImages)
    assert ws.data.templates == clip_imagenet_templates() and len(ws.data.templates) == 80
    bad = next(r for r in records.values() if r.attack == "badnet" and not r.defenses and r.detector is None)
    assert 0 <= bad.metrics["asr"] <= 1 and bad.metrics["attack_psnr_db"] > 10


def test_a_suite_can_give_its_own_prompt_templates(tmp_path):
    suite = real_suite(tmp_path, n_finetune=20, templates=["a drawing of a {}.", "{} shape"])
    assert Workspace(suite).data.templates == ("a drawing of a {}.", "{} shape")
