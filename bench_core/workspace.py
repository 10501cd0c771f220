"""A worker's view of one suite: its data, its device, the cache, and every artifact of the lineage, loaded
from the cache or computed (and cached) on first use.

Each process that runs units keeps one Workspace per suite. Artifacts are addressed by the keys of
:mod:`bench_core.keys`, so a workspace computes exactly what the plan's artifact units name, and a cell unit
finds its model in the cache. If an entry is missing or damaged when a unit reads it, the workspace recomputes
it (a failed load is a cache miss, never a permanent failure). In-process memos are small LRU maps: a serial run
over a full grid keeps the models of the (seed, attack) at hand, not every model of the grid.
"""

from __future__ import annotations

import copy
from dataclasses import replace
import sys
import time
import weakref
from collections import OrderedDict
from functools import cached_property
from typing import Callable, Hashable, TypeVar

import torch

from bench_core.cache import Cache, state_dict_tensors
from bench_core.checkpoints import Checkpointer
from bench_core.data.bundle import DataBundle
from bench_core.data.images import Images, map_images
from bench_core.interfaces import Attack, AttackInfo, PoisonResult, RunContext, TargetInfo
from bench_core.keys import attack_state_key, clean_model_key, model_key
from bench_core.models import ClipModel, build_model, pick_device
from bench_core.plan import PluginSpec
from bench_core.shipped import import_shipped
from bench_core.suite import Suite
from bench_core.training import train_contrastive
from bench_core.zeroshot import Classifier, ZeroShotClassifier

V = TypeVar("V")


class _LRU(OrderedDict):
    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def get_or(self, key: Hashable, make: Callable[[], V]) -> V:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value


class Workspace:
    """Lineage of one suite in one process (see the module docstring)."""

    def __init__(self, suite: Suite, cache: Cache | None = None, log: Callable[[str], None] | None = None):
        self.suite = suite
        self.cache = cache or Cache()
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.device = pick_device(suite.device)
        self.clean_key = clean_model_key(suite.model, suite.data, suite.pretrain)
        self._models: _LRU = _LRU(8)
        self._attacks: _LRU = _LRU(4)
        self._poisonings: _LRU = _LRU(2)
        self._triggered: _LRU = _LRU(4)
        self._classifiers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its classifier

    @cached_property
    def data(self) -> DataBundle:
        return DataBundle(self.suite.data, self.suite.model.image_size)

    def context(self, seed: int, reads: frozenset[str], attack: PluginSpec | None = None,
                clean_model: ClipModel | None = None, targets: tuple[TargetInfo, ...] = ()) -> RunContext:
        """A context holding only what ``reads`` declares (see :meth:`RunContext.restricted_to`).

        ``attack``: the attack a defense, detector or probe faces; fields of the defender's data that the attack
        :attr:`~bench_core.interfaces.Attack.contaminates` come as the attack left them."""
        d = self.data
        full = RunContext(
            seed=seed, device=self.device, classnames=d.classnames, templates=d.templates,
            write_caption=d.caption_writer(),
            clean_model=clean_model if "clean_model" in reads else None,
            finetune_pairs=d.finetune if "finetune_pairs" in reads else None,
            clean_reference=d.reference if "clean_reference" in reads else None,
            heldout=d.heldout if "heldout" in reads else None,
            attack=(AttackInfo(attack.name, attack.locality, attack.target_class)
                    if attack is not None and "attack" in reads else None),
            targets=targets)
        ctx = full.restricted_to(reads)
        if attack is not None:
            ctx = self._contaminated(ctx, attack, seed, reads)
        return ctx

    def _contaminated(self, ctx: RunContext, spec: PluginSpec, seed: int, reads: frozenset[str]) -> RunContext:
        attack = self.attack(spec, seed)
        fields = attack.contaminates & reads
        if not fields:
            return ctx
        attack_ctx = self.attack_context(spec, seed)
        return replace(ctx, **{f: attack.contaminate(f, getattr(ctx, f), attack_ctx) for f in sorted(fields)})

    def targets(self, spec: PluginSpec) -> tuple[TargetInfo, ...]:
        """What an adaptive attack is handed about its targets: the config fields it declared it knows, and
        the target plugins themselves when it is white-box."""
        if not spec.targets:
            return ()
        cls = type(spec.instantiate())
        return tuple(cls.target_info(t.kind, t.name, t.label, t.stage, t.config,
                                     t.instantiate() if cls.target_access == "white_box" else None)
                     for t in spec.targets)

    # --- models ---------------------------------------------------------------------------------------------
    def _lineage(self, parents: tuple[str, ...]) -> dict[str, str]:
        """The content checksums of an artifact's parents (the artifacts it is built from) as stored now."""
        return {p: sha for p in parents if (sha := self.cache.sha256(p)) is not None}

    def _hit(self, key: str, parents: tuple[str, ...] = ()) -> tuple | None:
        """A cache entry whose recorded parents still have the content it was built from; an entry built from a
        parent that has changed since (recomputed after damage, say) is discarded and rebuilt. Entries written
        before lineage was recorded carry no ``parents`` and are taken as they are."""
        hit = self.cache.load(key)
        if hit is None:
            return None
        recorded = hit[1].get("parents")
        if recorded is not None:
            now = self._lineage(parents)
            changed = [p for p, sha in recorded.items() if now.get(p) != sha]
            if changed:
                self.log(f"lineage: {key[:12]} was built from {', '.join(c[:12] for c in changed)}, whose content "
                         f"has changed since; rebuilding it")
                self.cache.discard(key)
                return None
        return hit

    def _from_cache(self, key: str, parents: tuple[str, ...] = ()) -> ClipModel | None:
        hit = self._hit(key, parents)
        if hit is None:
            return None
        model = build_model(self.suite.model, self.device)
        model.clip.load_state_dict(hit[0])
        return model.eval()

    def clean_model(self) -> ClipModel:
        """The clean CLIP: pretrained on the suite's data once (cached), or the model's pretrained weights."""
        return self._models.get_or(self.clean_key, self._clean_model)

    def _clean_model(self) -> ClipModel:
        if self.suite.pretrain is None:
            return build_model(self.suite.model, self.device).eval()
        model = self._from_cache(self.clean_key)
        if model is None and import_shipped(self.cache, self.clean_key, self.log):
            model = self._from_cache(self.clean_key)
        if model is not None:
            return model
        self.log(f"pretraining the clean model ({self.suite.model.label}, {len(self.data.pretrain)} pairs)")
        torch.manual_seed(0)
        model = build_model(self.suite.model, self.device)
        checkpoint = Checkpointer(self.cache, self.clean_key)
        stats = train_contrastive(model, self.data.pretrain.images, self.data.pretrain.captions,
                                  self.suite.pretrain, seed=0, desc="pretrain",
                                  loader_workers=self.suite.resources.loader_workers, checkpoint=checkpoint)
        self.log(f"  pretrained in {stats['seconds']:.0f}s, final loss {stats['loss']:.3f}")
        self.cache.save(self.clean_key, state_dict_tensors(model.clip), {"stats": stats})
        checkpoint.discard()
        return model

    def model(self, seed: int, attack: PluginSpec | None, chain: tuple[PluginSpec, ...]) -> ClipModel:
        """The model after the poisoned fine-tune and the train / post-train defenses of ``chain``."""
        key = model_key(self.suite.finetune, seed, self.clean_key, attack_state_key(attack, self.clean_key, seed),
                        chain)
        return self._models.get_or(key, lambda: self._model(key, seed, attack, chain))

    def _parents(self, seed: int, attack: PluginSpec | None, chain: tuple[PluginSpec, ...]) -> tuple[str, ...]:
        """The artifacts the model of (seed, attack, chain) is built from, made present in the cache first: the
        model before the last post-train defense; else the clean model and the attack's prepared state."""
        if chain and chain[-1].stage == "post_train":
            self.model(seed, attack, chain[:-1])
            return (model_key(self.suite.finetune, seed, self.clean_key,
                              attack_state_key(attack, self.clean_key, seed), chain[:-1]),)
        self.clean_model()
        if attack is None:
            return (self.clean_key,)
        self.attack(attack, seed)
        return self.clean_key, attack_state_key(attack, self.clean_key, seed)

    def _model(self, key: str, seed: int, attack: PluginSpec | None, chain: tuple[PluginSpec, ...]) -> ClipModel:
        parents = self._parents(seed, attack, chain)
        model = self._from_cache(key, parents)
        if model is not None:
            return model
        name = attack.label if attack else "none"
        if chain and chain[-1].stage == "post_train":
            model = copy.deepcopy(self.model(seed, attack, chain[:-1]))
            defense = chain[-1].instantiate()
            self.log(f"[seed {seed}] {name}: post-train defense {chain[-1].label}")
            torch.manual_seed(seed)
            stats = defense.repair(model, self.context(seed, defense.threat_model.reads, attack))
        else:
            model, stats = self._finetune(seed, attack, chain[0] if chain else None)
        model.eval()
        self.cache.save(key, state_dict_tensors(model.clip), {"stats": stats, "parents": self._lineage(parents)})
        return model

    def _finetune(self, seed: int, attack: PluginSpec | None,
                  train_defense: PluginSpec | None) -> tuple[ClipModel, dict[str, float]]:
        pairs, repeat, extra = self.training_pairs(seed, attack), None, None
        if attack is not None:
            extra = self.attack(attack, seed).finetune_loss(self.poisoning(attack, seed),
                                                            self.attack_context(attack, seed))
        if train_defense is not None:
            defense = train_defense.instantiate()
            plan = defense.plan_training(pairs, self.context(seed, defense.threat_model.reads, attack))
            pairs, repeat = plan.pairs, plan.repeat
        base = self.clean_model()
        what = (attack.label if attack else "none") + (f" + {train_defense.label}" if train_defense else "")
        self.log(f"[seed {seed}] fine-tuning on {len(pairs)} pairs ({what})")
        model = copy.deepcopy(base)
        torch.manual_seed(seed)
        stats = train_contrastive(model, pairs.images, list(pairs.captions), self.suite.finetune,
                                  seed=seed, desc=f"finetune {what}", repeat=repeat, extra_loss=extra,
                                  loader_workers=self.suite.resources.loader_workers)
        self.log(f"  fine-tuned in {stats['seconds']:.0f}s, final loss {stats['loss']:.3f}")
        return model, stats

    # --- attacks --------------------------------------------------------------------------------------------
    def attack(self, spec: PluginSpec, seed: int) -> Attack:
        """The attack with its trigger state prepared once per (attack, clean model, seed) and cached."""
        key = attack_state_key(spec, self.clean_key, seed)
        return self._attacks.get_or(key, lambda: self._prepare(key, spec, seed))

    def _prepare(self, key: str, spec: PluginSpec, seed: int) -> Attack:
        attack: Attack = spec.instantiate()
        reads = attack.threat_model.reads
        # the clean model is a parent when the attack reads it; it is loaded only to prepare, not to check
        parents = (self.clean_key,) if "clean_model" in reads and self.suite.pretrain is not None else ()
        hit = self._hit(key, parents)
        if hit is None:
            clean = self.clean_model() if "clean_model" in reads else None
            started = time.perf_counter()
            state = attack.prepare(self.context(seed, reads, clean_model=clean, targets=self.targets(spec)))
            self.cache.save(key, state, {"seconds": time.perf_counter() - started,
                                         "parents": self._lineage(parents)})
        else:
            state = hit[0]
        attack.load_state(state)
        return attack

    def gallery(self, spec: PluginSpec, seed: int, key: str) -> None:
        """Store a few evaluation images (spread over the split) and their triggered copies under ``key``:
        what the leaderboard draws, so it never decodes a data set itself."""
        from bench_core.plan import GALLERY_IMAGES

        if self.cache.has(key):
            return
        images = self.data.evaluation.images
        step = max(1, len(images) // GALLERY_IMAGES)
        clean = images[list(range(0, len(images), step))[:GALLERY_IMAGES]]
        attack = self.attack(spec, seed)
        ctx = self.context(seed, attack.threat_model.reads - {"clean_model"}, targets=self.targets(spec))
        triggered = attack.apply_trigger(clean, ctx, train=False).clamp(0, 1)
        self.cache.save(key, {"clean": clean, "triggered": triggered}, {"attack": spec.label, "seed": seed})

    def attack_context(self, spec: PluginSpec, seed: int) -> RunContext:
        reads = self.attack(spec, seed).threat_model.reads
        return self.context(seed, reads, clean_model=self.clean_model() if "clean_model" in reads else None,
                            targets=self.targets(spec))

    def poisoning(self, spec: PluginSpec, seed: int) -> PoisonResult:
        return self._poisonings.get_or((spec.model_dump_json(), seed), lambda: self.attack(spec, seed).poison(
            self.data.finetune, self.attack_context(spec, seed)))

    def training_pairs(self, seed: int, attack: PluginSpec | None):
        """The fine-tune pairs as the victim receives them (poisoned unless there is no attack)."""
        return self.data.finetune if attack is None else self.poisoning(attack, seed).pairs

    def triggered(self, spec: PluginSpec, seed: int) -> Images:
        """Triggered copies of the evaluation images (all classes; metrics filter the target class).

        In-memory images (the world) are triggered at once; a lazy column is triggered per batch as it is read,
        so nothing the size of the test split is ever held (an attack that draws, say, patch locations from
        its context generator then draws them per batch: deterministic, but not the whole-split draw)."""
        def make() -> Images:
            attack, ctx = self.attack(spec, seed), self.attack_context(spec, seed)
            return map_images(self.data.evaluation.images,
                              lambda images: attack.apply_trigger(images, ctx, train=False).clamp(0, 1))
        return self._triggered.get_or((spec.model_dump_json(), seed), make)

    # --- classifiers ----------------------------------------------------------------------------------------
    def zero_shot(self, model: ClipModel) -> ZeroShotClassifier:
        """The plain classifier of ``model``; class embeddings depend only on the model, so built once."""
        if model not in self._classifiers:
            self._classifiers[model] = ZeroShotClassifier.build(model, self.data.classnames, self.data.templates)
        return self._classifiers[model]

    def classifier(self, seed: int, attack: PluginSpec | None, defenses: tuple[PluginSpec, ...]) -> Classifier:
        """The model after ``defenses``' train / post-train stages, wrapped by their train / inference stages."""
        model = self.model(seed, attack, tuple(d for d in defenses if d.stage != "inference"))
        clf: Classifier = self.zero_shot(model)
        for spec in defenses:
            if spec.stage in ("train", "inference"):
                defense = spec.instantiate()
                clf = defense.wrap(clf, self.context(seed, defense.threat_model.reads, attack))
        return clf
