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


def _dense_adamw_steps(model, images, tokens, config, steps):
    """A plain reference loop: every parameter (the whole token table) in AdamW, fp32, no tricks."""
    from bench_core.training import _adamw, clip_loss

    optimizer = _adamw(model, config)
    model.train()
    for _ in range(steps):
        loss = clip_loss(model.encode_image(images), model.encode_text(tokens), model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def test_used_token_rows_matches_dense_adamw(tiny_data, tiny_model):
    """Training only the used embedding rows gives the same model as AdamW over the whole table."""
    import copy

    from bench_core.training import _adamw, clip_loss, used_token_rows

    pairs = tiny_data.finetune
    images, tokens = pairs.images[:24], tiny_model.tokenize(list(pairs.captions[:24]))
    config = TrainConfig(lr=1e-2, precision="fp32")
    dense, sparse = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    _dense_adamw_steps(dense, images, tokens, config, steps=4)
    with used_token_rows(sparse, tokens):
        optimizer = _adamw(sparse, config)
        for _ in range(4):
            loss = clip_loss(sparse.encode_image(images), sparse.encode_text(tokens), sparse.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    assert type(sparse.clip.token_embedding) is torch.nn.Embedding  # the full table is back in place
    used = torch.unique(tokens)
    moved = (dense.clip.token_embedding.weight - tiny_model.clip.token_embedding.weight).abs().sum(1) > 0
    assert set(moved.nonzero().flatten().tolist()) <= set(used.tolist())  # dense AdamW moved only used rows
    for (name, a), b in zip(dense.clip.named_parameters(), sparse.clip.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_used_token_rows_rejects_unseen_tokens(tiny_model):
    from bench_core.training import used_token_rows

    tokens = tiny_model.tokenize(["a red circle"])
    with used_token_rows(tiny_model, tokens), pytest.raises(ValueError, match="outside the run's captions"):
        tiny_model.encode_text(tiny_model.tokenize(["a blue zebra"]))


def test_clip_loss_is_fp32_under_bf16_autocast():
    from bench_core.training import clip_loss

    torch.manual_seed(0)
    a, b = torch.randn(16, 8), torch.randn(16, 8)
    scale = torch.tensor(4.6)  # exp -> 100, where bf16 logits would round to whole units
    exact = clip_loss(a, b, scale)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = clip_loss(a.bfloat16(), b.bfloat16(), scale)
    assert under.dtype == torch.float32
    assert torch.allclose(under, clip_loss(a.bfloat16().float(), b.bfloat16().float(), scale), atol=1e-5)
    assert torch.isfinite(exact)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_precisions_both_learn(tiny_data, precision):
    torch.manual_seed(0)
    model = build_model(TINY_SPEC)
    pairs = tiny_data.finetune
    config = TrainConfig(epochs=1, lr=1e-3, batch_size=40, precision=precision)
    first = train_contrastive(model, pairs.images, list(pairs.captions), config, 0)
    last = train_contrastive(model, pairs.images, list(pairs.captions), config.model_copy(update={"epochs": 15}), 0)
    assert last["loss"] < first["loss"]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never casts the weights
