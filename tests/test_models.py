"""Models load offline from local weights; zero-shot averages templates; the training loop learns."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from bench_core.cache import state_dict_tensors
from bench_core.models import ModelSpec, build_model, load_weights
from bench_core.training import TrainConfig, train_contrastive
from bench_core.zeroshot import class_embeddings

from conftest import TINY_SPEC


def test_local_weights_load_offline(tmp_path, tiny_model):
    path = tmp_path / "w.safetensors"
    save_file(state_dict_tensors(tiny_model.clip), str(path))
    spec = TINY_SPEC.model_copy(update={"pretrained": str(path)})
    loaded = build_model(spec).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_image(x), tiny_model.encode_image(x))
    torch.save(tiny_model.clip.state_dict(), tmp_path / "w.pt")
    load_weights(build_model(TINY_SPEC).clip, tmp_path / "w.pt")  # weights_only torch file


def test_missing_weights_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model(TINY_SPEC.model_copy(update={"pretrained": str(tmp_path / "nope.safetensors")}))


def test_unknown_open_clip_arch_suggests():
    from bench_core.errors import BenchError

    with pytest.raises(BenchError, match="did you mean 'ViT-B-32'"):
        build_model(ModelSpec(arch="ViT-B-33"))


def test_geometry_validation():
    with pytest.raises(ValueError, match="not a multiple"):
        ModelSpec(image_size=30, patch_size=8)


def test_class_embeddings_average_templates(tiny_model):
    templates = ("a photo of a {}.", "a {}.")
    got = class_embeddings(tiny_model, ["star"], templates)[0]
    with torch.no_grad():
        each = F.normalize(tiny_model.encode_text([t.format("star") for t in templates]), dim=-1)
    assert torch.allclose(got, F.normalize(each.mean(0), dim=-1), atol=1e-6)


def test_training_reduces_loss_and_lifts_accuracy(tiny_data):
    torch.manual_seed(0)
    model = build_model(TINY_SPEC)
    pairs = tiny_data.finetune
    first = train_contrastive(model, pairs.images, list(pairs.captions), TrainConfig(epochs=1, lr=1e-3, batch_size=40), 0)
    last = train_contrastive(model, pairs.images, list(pairs.captions), TrainConfig(epochs=15, lr=2e-3, batch_size=40), 0)
    assert last["loss"] < first["loss"]
    assert not model.training


def test_repeat_counts_pairs(tiny_data, tiny_model):
    import copy

    model = copy.deepcopy(tiny_model)
    pairs = tiny_data.finetune
    repeat = torch.ones(len(pairs), dtype=torch.long)
    repeat[:20] = 3
    stats = train_contrastive(model, pairs.images, list(pairs.captions), TrainConfig(epochs=1, batch_size=10), 0,
                              repeat=repeat)
    assert stats["steps"] == (len(pairs) + 40) // 10
