"""Every content key, derived in one place.

A key is the SHA-256 of (kind, name, version, config, upstream keys) — :func:`bench_core.cache.content_key`.
Change any input (a plugin's version or config, the suite's shared settings, the model an artifact was derived
from, the seed) and the key changes, so nothing stale is ever reused. The formulas below are the ones every
stored result and cached artifact was written under: changing one orphans the store and the cache.
"""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence

from bench_core import __version__ as CORE_VERSION
from bench_core.cache import content_key

NO_ATTACK = "none"
"""The clean model's name in grids, keys and results (no attack)."""


class Identified(Protocol):
    """Anything with a plugin's identity: a plugin instance or a resolved :class:`bench_core.plan.PluginSpec`."""

    name: str
    version: str

    @property
    def config(self): ...


def plugin_id(plugin: Identified) -> str:
    """``name@version:confighash`` — what every cache key and cell key is built from."""
    return f"{plugin.name}@{plugin.version}:{content_key('config', plugin.name, plugin.version, plugin.config)[:10]}"


def attack_id(attack: Identified) -> str:
    """An attack's identity in keys: its :func:`plugin_id`, plus the ids of the plugins it targets when it is
    an adaptive attack (a changed target re-prepares the attack and re-runs everything downstream)."""
    targets = getattr(attack, "targets", ())
    return plugin_id(attack) + ("" if not targets else " -> " + ",".join(plugin_id(t) for t in targets))


def _target_ids(attack: Identified) -> tuple[str, ...]:
    return tuple(plugin_id(t) for t in getattr(attack, "targets", ()))


def suite_config_hash(model, data, pretrain, finetune, evaluation) -> str:
    """Short hash of the settings every cell of a suite shares; part of every cell key."""
    identity = getattr(data, "identity", None)  # a source whose later options, at their default, leave keys alone
    shared = {"model": model, "data": identity() if identity else data, "pretrain": pretrain, "finetune": finetune,
              "evaluation": evaluation}
    return content_key("suite", "shared", "1", shared)[:12]


def clean_model_key(model, data, pretrain) -> str:
    """The clean CLIP: the model spec, the data it is pretrained on and the pretraining settings.

    A data source may narrow "the data it is pretrained on" to what its pretraining split depends on
    (``pretraining_identity()``, the scene world): suites that differ only in their fine-tune or test splits
    then share one clean model, and a shipped one."""
    narrowed = getattr(data, "pretraining_identity", None)
    return content_key("model", "clean", CORE_VERSION,
                       {"model": model, "data": narrowed() if narrowed else data, "pretrain": pretrain})


def attack_state_key(attack: Identified | None, clean_key: str, seed: int) -> str:
    """An attack's prepared state (trigger, encoder, patch) for one seed; ``none`` when there is no attack."""
    if attack is None:
        return NO_ATTACK
    return content_key("attack_state", attack.name, attack.version, attack.config,
                       (clean_key, str(seed), *_target_ids(attack)))


def gallery_key(attack_key: str, n_images: int) -> str:
    """A trigger gallery: ``n_images`` clean test images and their triggered copies under one attack state."""
    return content_key("gallery", "trigger", CORE_VERSION, {"n_images": n_images}, (attack_key,))


def model_key(finetune, seed: int, clean_key: str, attack_key: str, chain: Sequence[Identified]) -> str:
    """The model after the poisoned fine-tune (with its train-stage defense) and each post-train defense of
    ``chain``, in order. The empty chain is the plain fine-tune."""
    return content_key("model", "finetuned", CORE_VERSION, {"finetune": finetune, "seed": seed},
                       (clean_key, attack_key, *(plugin_id(d) for d in chain)))


def cell_key(kind: str, config_hash: str, seed: int, attack: Identified | None, parts: Iterable[Identified]) -> str:
    """One result row: its kind, the suite's shared settings, the seed, the attack and the plugins it runs
    (an eval cell's defenses, a detector, a probe and its defenses)."""
    upstream = (attack_id(attack) if attack else NO_ATTACK, *(plugin_id(p) for p in parts))
    return content_key("cell", kind, CORE_VERSION, {"suite": config_hash, "seed": seed}, upstream)
