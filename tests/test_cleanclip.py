"""CleanCLIP: augmentations (deterministic, shape and range kept, captions changed), the unimodal loss, repair(),
and an end-to-end tiny suite with CleanCLIP, CleanCLIP + Decomp-Rep and PDB (with its robustness probe)."""

import random

import pytest
import torch
import yaml

from bench_core.registry import default_registry
from bench_core.runner import Runner
from bench_core.store import ResultStore
from bench_core.suite import load_suite

from bdbench_cleanclip.augment import augment_caption, augment_images
from bdbench_cleanclip.cleanclip import CleanCLIP, CleanCLIPConfig, UnimodalLoss, inmodal_loss
from conftest import make_context


def _images(n=6, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_image_augmentation_is_deterministic_and_keeps_shape_and_range():
    x = _images()
    a = augment_images(x, torch.Generator().manual_seed(5))
    b = augment_images(x, torch.Generator().manual_seed(5))
    c = augment_images(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.allclose(a, x)


def test_caption_augmentation_is_deterministic_and_changes_captions(tiny_data):
    captions = list(tiny_data.heldout.captions[:20])
    first = [augment_caption(c, random.Random(3)) for c in captions]
    again = [augment_caption(c, random.Random(3)) for c in captions]
    assert first == again
    assert all(a != c for a, c in zip(first, captions))  # every world caption has >= 2 distinct words
    assert augment_caption("circle", random.Random(0)) == "circle"  # too short to change


def test_inmodal_loss_prefers_matching_views():
    a = torch.eye(4)
    scale = torch.tensor(2.0)
    assert inmodal_loss(a, a, scale) < inmodal_loss(a, a.roll(1, 0), scale)


def test_unimodal_loss_is_finite_and_positive(tiny_model, tiny_context):
    pairs = tiny_context.heldout
    loss_fn = UnimodalLoss(tiny_model, list(pairs.captions), tiny_context, CleanCLIPConfig())
    images = pairs.images[:8]
    tokens = tiny_model.tokenize(list(pairs.captions[:8]))
    with torch.no_grad():
        loss = loss_fn(tiny_model, images, tokens, tiny_model.encode_image(images), tiny_model.encode_text(tokens))
    assert torch.isfinite(loss) and loss > 0
    assert loss_fn.last["image"] > 0 and loss_fn.last["text"] > 0


def test_repair_changes_weights_and_returns_stats(tiny_model, tiny_data):
    import copy

    model = copy.deepcopy(tiny_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = make_context(tiny_data).restricted_to(CleanCLIP.threat_model.reads)
    stats = CleanCLIP({"epochs": 2, "batch_size": 16}).repair(model, ctx)
    assert stats["steps"] == 2 * (len(tiny_data.heldout) // 16)
    assert stats["n_pairs"] == len(tiny_data.heldout)
    assert all(torch.isfinite(torch.tensor(stats[k])) for k in ("loss", "inmodal_image_loss", "inmodal_text_loss"))
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "clip.visual.proj" in changed and any(k.startswith("clip.transformer") for k in changed)
    assert not model.training


def test_repair_needs_heldout(tiny_model, tiny_data):
    ctx = make_context(tiny_data).restricted_to(frozenset())
    with pytest.raises(RuntimeError, match="heldout"):
        CleanCLIP().repair(tiny_model, ctx)


def test_registered_with_threat_model_and_presets():
    cls = default_registry().of("defense").get("cleanclip")
    assert cls is CleanCLIP and cls.stage == "post_train"
    assert cls.threat_model.reads == frozenset({"heldout"}) and not cls.threat_model.oracle
    paper = cls(cls.presets["paper"]).config
    assert (paper.epochs, paper.batch_size, paper.lr) == (10, 64, 5e-6)
    with pytest.raises(ValueError):
        CleanCLIP({"crop_scale": (0.9, 0.5)})
    with pytest.raises(ValueError):
        CleanCLIP({"unknown": 1})


# --- end to end -----------------------------------------------------------------------------------------------

TINY_SUITE = {
    "name": "tiny_defenses",
    "model": {"arch": "tiny", "image_size": 16, "patch_size": 8, "width": 32, "layers": 2, "heads": 4,
              "text_width": 32, "text_layers": 1, "text_heads": 2, "embed_dim": 32, "context_length": 16},
    "data": {"kind": "world", "image_size": 16, "n_pretrain": 100, "n_finetune": 100, "n_test": 50,
             "n_heldout": 40, "n_retrieval": 20},
    "pretrain": {"epochs": 1, "lr": 0.001, "batch_size": 50},
    "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 50},
    "attacks": [{"name": "badnet", "config": {"patch_size": 4}}],
    "pipelines": [[], ["pdb"], [{"name": "cleanclip", "config": {"epochs": 2, "batch_size": 20}}],
                  [{"name": "cleanclip", "config": {"epochs": 2, "batch_size": 20}}, "decomp_rep"]],
    "probes": [{"name": "pdb_robustness", "pipeline": ["pdb"]}],
    "seeds": [0],
    "evaluation": {"detector_samples": 10, "probe_samples": 10, "batch_size": 64},
}


def test_tiny_suite_with_cleanclip_and_pdb_end_to_end(tmp_path):
    path = tmp_path / "tiny_defenses.yaml"
    path.write_text(yaml.safe_dump(TINY_SUITE))
    runner = Runner(load_suite(str(path)))
    counts = runner.run()
    cells = runner.all_cells()
    records = ResultStore().get_many(c.key for c in cells)
    errors = {r.key: r.error for r in records.values() if r.status != "ok"}
    assert not errors, errors
    assert counts == {"computed": len(cells), "skipped": 0, "failed": 0}
    pipelines = {tuple(r.defenses) for r in records.values() if r.probe is None}
    assert {(), ("pdb",), ("cleanclip",), ("cleanclip", "decomp_rep")} <= pipelines
    probe = next(r for r in records.values() if r.probe == "pdb_robustness")
    assert "ece_with_trigger" in probe.metrics and probe.payload["tables"]["pdb_channels"]
