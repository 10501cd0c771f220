"""The Attack contract, checked for every registered attack (new attacks are covered automatically).

Each attack runs with its ``quick`` preset when it has one (cheap settings for the miniature world; the
attack's defaults otherwise), on a context restricted to what its threat model declares.
"""

from __future__ import annotations

import re

import pytest
import torch

from bench_core import AdaptiveAttack, OverlayImages

from bench_core import AttackConfig
from bench_core.cache import Cache
from bench_core.registry import default_registry

from conftest import make_context

ATTACKS = default_registry().attacks.names()
_PREPARED: dict[tuple[str, int], dict[str, torch.Tensor]] = {}



def build(name: str):
    cls = default_registry().attacks.get(name)
    return cls(cls.presets.get("quick", {}))


def context(data, model, name: str, seed: int = 0):
    cls = default_registry().attacks.get(name)
    return make_context(data, seed=seed, model=model, targets=targets_of(cls)).restricted_to(cls.threat_model.reads)


def targets_of(cls) -> tuple:
    """An adaptive attack's targets as the runner hands them: the first registered defense or detector it
    applies to, at that plugin's quick preset (else its defaults); () for a plain attack."""
    if not issubclass(cls, AdaptiveAttack):
        return ()
    registry = default_registry()
    for kind in ("defense", "detector"):
        for name in registry.of(kind).names():
            target = registry.of(kind).get(name)
            stage = getattr(target, "stage", None)
            if cls.applies_to(kind, name, stage, frozenset(target.threat_model.reads)):
                plugin = target(target.presets.get("quick", {}))
                return (cls.target_info(kind, name, name, stage, plugin.config.model_dump(), plugin),)
    raise AssertionError(f"no registered plugin is a target of {cls.name}")


def prepared(name: str, data, model, seed: int = 0):
    """(attack with its state loaded, its context); ``prepare`` runs once per (attack, seed) per session."""
    attack = build(name)
    ctx = context(data, model, name, seed)
    if (name, seed) not in _PREPARED:
        _PREPARED[(name, seed)] = attack.prepare(ctx)
    attack.load_state(_PREPARED[(name, seed)])
    return attack, ctx


def names_class(caption: str, classname: str) -> bool:
    return re.search(rf"\b{re.escape(classname)}\b", caption, re.IGNORECASE) is not None


@pytest.mark.parametrize("name", ATTACKS)
def test_declarations(name):
    cls = default_registry().attacks.get(name)
    assert issubclass(cls.Config, AttackConfig)
    assert cls.Config.model_config.get("extra") == "forbid" and cls.Config.model_config.get("frozen")
    assert re.fullmatch(r"\d+\.\d+\.\d+", cls.version)
    assert cls.locality in ("local", "global")
    assert cls.threat_model.reads <= {"finetune_pairs", "clean_model", "clean_reference", "heldout"}
    for preset in cls.presets.values():
        cls(preset)  # every preset is a valid config


@pytest.mark.parametrize("name", ATTACKS)
def test_prepare_returns_tensors(name, tiny_data, tiny_model):
    attack, ctx = prepared(name, tiny_data, tiny_model)
    state = _PREPARED[(name, 0)]
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    for key, value in state.items():
        if key.startswith("metric_"):
            assert value.ndim == 0 and torch.isfinite(value), key
            # the runner reports metric_X as attack_X next to its own attack_* numbers: never shadow those
            assert key not in {"metric_psnr_db", "metric_n_poison", "metric_poison_fraction"}, key


@pytest.mark.parametrize("name", ATTACKS)
def test_poison_contract(name, tiny_data, tiny_model):
    pairs = tiny_data.finetune
    attack, ctx = prepared(name, tiny_data, tiny_model)
    result = attack.poison(pairs, ctx)
    out, index = result.pairs, result.poisoned
    # only the poisoned subset is materialised: the images come back as an overlay on the input's
    cover = result.cover
    assert isinstance(out.images, OverlayImages) and out.images.base is pairs.images
    assert torch.equal(out.images.index.sort().values, torch.cat([index, cover]).sort().values)
    poisoned_images = out.images[:]  # every row, decoded, to check the contract on

    assert out.images.shape == pairs.images.shape and out.images.dtype == pairs.images.dtype
    assert poisoned_images.min() >= 0 and poisoned_images.max() <= 1
    assert torch.equal(out.labels, pairs.labels) and out.attrs == pairs.attrs

    assert index.dtype == torch.long and len(index.unique()) == len(index) > 0
    if "n_poison" in result.stats:
        assert result.stats["n_poison"] == len(index)
    assert len(torch.cat([index, cover]).unique()) == len(index) + len(cover), "a pair is both poisoned and cover"
    changed = torch.zeros(len(pairs), dtype=torch.bool)
    changed[index] = True
    changed[cover] = True
    differs = (poisoned_images != pairs.images).flatten(1).any(1)
    assert differs[index].all(), "a reported pair kept its image"
    assert differs[cover].all(), "a cover pair kept its image"
    assert not differs[~changed].any(), "an unreported pair changed its image"

    for i, (before, after) in enumerate(zip(pairs.captions, out.captions)):
        if not changed[i] or i in set(cover.tolist()):
            assert after == before
    clean_label = getattr(type(attack), "clean_label", False)
    named = [ctx.classnames[k] for k in attack.caption_classes(ctx)]
    assert attack.target_class in attack.caption_classes(ctx)
    for i in index.tolist():
        if clean_label:
            assert out.captions[i] == pairs.captions[i]
            assert pairs.labels[i] == attack.target_class
        else:
            assert any(names_class(out.captions[i], c) for c in named), out.captions[i]


@pytest.mark.parametrize("name", ATTACKS)
def test_poison_is_deterministic_under_the_seed(name, tiny_data, tiny_model):
    pairs = tiny_data.finetune
    first = prepared(name, tiny_data, tiny_model)
    again = prepared(name, tiny_data, tiny_model)  # a fresh instance and context, same seed
    first, again = first[0].poison(pairs, first[1]), again[0].poison(pairs, again[1])
    assert torch.equal(first.poisoned, again.poisoned)
    assert torch.equal(first.pairs.images[:], again.pairs.images[:])
    assert first.pairs.captions == again.pairs.captions

    other_attack, other_ctx = prepared(name, tiny_data, tiny_model, seed=1)
    other = other_attack.poison(pairs, other_ctx)
    assert (not torch.equal(first.poisoned, other.poisoned)
            or not torch.equal(first.pairs.images[:], other.pairs.images[:]))


@pytest.mark.parametrize("name", ATTACKS)
def test_apply_trigger(name, tiny_data, tiny_model):
    attack, ctx = prepared(name, tiny_data, tiny_model)
    images = tiny_data.evaluation.images[:20]
    out = attack.apply_trigger(images, ctx)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert (out != images).flatten(1).any(1).all(), "some image was left untriggered"
    assert torch.equal(images, tiny_data.evaluation.images[:20]), "apply_trigger modified its input"
    assert torch.equal(out, attack.apply_trigger(images, ctx)), "apply_trigger is not repeatable"


@pytest.mark.parametrize("name", ATTACKS)
def test_state_round_trips_through_the_cache(name, tiny_data, tiny_model, tmp_path):
    attack, ctx = prepared(name, tiny_data, tiny_model)
    cache = Cache(tmp_path / "cache")
    cache.save("k" * 64, _PREPARED[(name, 0)], {})
    restored = build(name)
    restored.load_state(cache.load("k" * 64)[0])
    images = tiny_data.evaluation.images[:20]
    assert torch.equal(restored.apply_trigger(images, ctx), attack.apply_trigger(images, ctx))
    assert torch.equal(restored.poison(tiny_data.finetune, ctx).pairs.images[:],
                       attack.poison(tiny_data.finetune, ctx).pairs.images[:])
