"""The plan: a suite expanded into a DAG of frozen, serialisable work units.

``expand(suite, registry)`` resolves every plugin entry once — name, version, full config, label, the class's
import path, threat model — and lays out the lineage of each (seed, attack):

    pretrain (the clean model, once)  ->  attack (its prepared state)  ->  finetune (plain, or with one
    train-stage defense)  ->  post_train (each post-train defense in turn)  ->  cells (eval, detector, probe)

Each unit carries what it needs to run anywhere: its content key (:mod:`bench_core.keys`), the resolved specs,
the seed and the ids of the units it depends on. After planning nothing is looked up by name in the registry:
a worker imports each plugin class from its spec. The leaderboard reads cells from the plan too.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bench_core.errors import BenchError
from bench_core.interfaces import AdaptiveAttack, Plugin
from bench_core.keys import NO_ATTACK, attack_state_key, cell_key, clean_model_key, gallery_key, model_key
from bench_core.registry import PluginRegistry
from bench_core.suite import PluginRef, Suite

UnitKind = Literal["pretrain", "attack", "gallery", "finetune", "post_train", "eval", "detector", "probe"]
GALLERY_IMAGES = 6
CELL_KINDS = ("eval", "detector", "probe")
TRAINING_KINDS = ("pretrain", "finetune", "post_train")
STAGE_ORDER = {"train": 0, "post_train": 1, "inference": 2}

_LOCAL_CLASSES: dict[str, type[Plugin]] = {}
"""Classes resolved in this process by import path; serves classes that cannot be imported (defined in a
function), which only the serial executor can run."""


class PluginSpec(BaseModel):
    """A plugin entry, resolved: identity, full config, label and what the leaderboard shows about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str
    version: str
    label: str
    config: dict[str, Any]
    entry: str  # "module:QualName" of the class
    threat_model: str  # the tag shown in tables
    oracle: bool = False
    stage: str | None = None  # defenses: train, post_train or inference
    locality: str | None = None  # attacks: local or global
    target_class: int | None = None  # attacks
    targets: tuple["PluginSpec", ...] = ()  # adaptive attacks: the defenses / detectors they know and attack
    plain: str | None = None  # adaptive attacks: the registry name of the plain attack they are compared with

    @property
    def adaptive(self) -> bool:
        return bool(self.targets)

    def instantiate(self) -> Plugin:
        """A fresh plugin instance with this spec's config, from the class the spec names."""
        cls = _LOCAL_CLASSES.get(self.entry) or _import(self.entry)
        if cls.name != self.name or cls.version != self.version:
            raise BenchError(f"{self.entry} is now {cls.name}@{cls.version}, but the plan was made with "
                             f"{self.name}@{self.version}; plan again")
        return cls(self.config)


def _import(entry: str) -> type[Plugin]:
    module, _, qualname = entry.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def resolve(registry: PluginRegistry, kind: str, ref: PluginRef, label: str,
            classnames: tuple[str, ...] | None = None, targets: tuple[PluginSpec, ...] = ()) -> PluginSpec:
    """Instantiate ``ref`` once (unknown names and bad configs fail here) and freeze what it is. An attack's
    ``target`` (a class name) becomes ``config.target_class``, its index in ``classnames``."""
    config = ref.config
    if ref.target is not None:
        config = {**config, "target_class": class_index(ref.target, classnames or (), f"attack {label}")}
    plugin = registry.create(kind, ref.name, config, ref.preset)
    cls = type(plugin)
    adaptive = isinstance(plugin, AdaptiveAttack)
    if adaptive and not targets:
        raise BenchError(f"attack {label} is adaptive: list the defenses or detectors it attacks in its suite "
                         f"entry (targets: [...])")
    if targets and not adaptive:
        raise BenchError(f"attack {label} is not adaptive ({cls.__name__} is no AdaptiveAttack): it takes no targets")
    entry = f"{cls.__module__}:{cls.__qualname__}"
    _LOCAL_CLASSES[entry] = cls
    return PluginSpec(kind=kind, name=plugin.name, version=plugin.version, label=label,
                      config=plugin.config.model_dump(mode="json"), entry=entry,
                      threat_model=plugin.threat_model.tag, oracle=plugin.threat_model.oracle,
                      stage=getattr(plugin, "stage", None), locality=getattr(plugin, "locality", None),
                      target_class=plugin.target_class if kind == "attack" else None,
                      targets=targets, plain=plugin.plain if adaptive else None)


class Cell(BaseModel):
    """One row of the results store: an evaluation, a detector run or a probe run, by labels and specs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    kind: str  # "eval" | "detector" | "probe"
    seed: int
    attack: str  # label, or "none"
    pipeline: tuple[str, ...] = ()  # defense labels (eval: the row; probe: the model it runs on)
    detector: str | None = None
    probe: str | None = None
    attack_spec: PluginSpec | None = None
    defense_specs: tuple[PluginSpec, ...] = ()
    plugin_spec: PluginSpec | None = None  # the detector or probe

    def describe(self) -> str:
        what = self.detector or self.probe or (" -> ".join(self.pipeline) or "no defense")
        return f"[seed {self.seed}] {self.attack} / {self.kind} {what}"

    def spec(self) -> dict[str, Any]:
        """The full cell spec stored with its record."""
        return {"kind": self.kind, "seed": self.seed,
                "attack": self.attack_spec.model_dump() if self.attack_spec else NO_ATTACK,
                "defenses": [d.model_dump() for d in self.defense_specs],
                "plugin": self.plugin_spec.model_dump() if self.plugin_spec else None}


class Unit(BaseModel):
    """One self-contained piece of work. Artifact units (pretrain, attack, finetune, post_train) write the
    cache entry ``key``; cell units produce the result row ``key``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: UnitKind
    key: str
    seed: int | None = None
    deps: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()  # the content keys of the deps' artifacts, in the order of deps
    attack: PluginSpec | None = None
    chain: tuple[PluginSpec, ...] = ()  # model units: the train / post-train defenses applied, in order
    cell: Cell | None = None

    @property
    def is_cell(self) -> bool:
        return self.kind in CELL_KINDS

    def describe(self) -> str:
        if self.cell is not None:
            return self.cell.describe()
        if self.kind == "pretrain":
            return "pretrain the clean model"
        what = self.attack.label if self.attack else NO_ATTACK
        if self.kind in ("attack", "gallery"):
            return f"[seed {self.seed}] {'prepare' if self.kind == 'attack' else 'trigger gallery of'} {what}"
        chain = " -> ".join(d.label for d in self.chain)
        return f"[seed {self.seed}] {self.kind} {what}" + (f" + {chain}" if chain else "")


class Plan(BaseModel):
    """A suite's units in dependency order (every unit after its deps) and the cells they produce."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: Suite
    config_hash: str
    units: tuple[Unit, ...]
    attacks: tuple[PluginSpec, ...]
    pipelines: tuple[tuple[PluginSpec, ...], ...]
    detectors: tuple[PluginSpec, ...]
    probes: tuple[tuple[PluginSpec, tuple[PluginSpec, ...]], ...]

    @property
    def cells(self) -> list[Cell]:
        return [u.cell for u in self.units if u.cell is not None]

    def galleries(self) -> dict[str, Unit]:
        """Attack label -> its trigger-gallery unit (first seed)."""
        return {u.attack.label: u for u in self.units if u.kind == "gallery"}

    def counts(self) -> dict[str, int]:
        by_kind: dict[str, int] = {}
        for u in self.units:
            by_kind[u.kind] = by_kind.get(u.kind, 0) + 1
        return {"units": len(self.units), "trainings": sum(by_kind.get(k, 0) for k in TRAINING_KINDS),
                "cells": sum(by_kind.get(k, 0) for k in CELL_KINDS), **{f"{k}_units": v for k, v in by_kind.items()}}


def class_index(name: str, classnames: tuple[str, ...], what: str) -> int:
    """The index of class ``name`` (case-insensitive); an unknown name is a one-line error naming the closest."""
    lowered = [c.lower() for c in classnames]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    import difflib

    near = difflib.get_close_matches(name.lower(), lowered, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(classnames[lowered.index(n)]) for n in near)}?" if near else ""
    raise BenchError(f"{what}: target {name!r} is not a class of this suite's data{hint} "
                     f"({len(classnames)} classes)")


def expand(suite: Suite, registry: PluginRegistry, classnames: tuple[str, ...] | None = None) -> Plan:
    """The suite's DAG of units. Unknown plugins, invalid configs and out-of-order pipelines are one-line
    :class:`BenchError` s here, before any work; :func:`bench_core.validate.check_plan` checks the rest.
    ``classnames`` resolves attack targets given by name (default: read from the suite's data)."""
    if classnames is None and any(a.target for a in suite.attacks):
        from bench_core.validate import check_data
        classnames = check_data(suite)
    defense_labels = suite.defense_labels()

    def pipeline(refs: list[PluginRef]) -> tuple[PluginSpec, ...]:
        specs = tuple(resolve(registry, "defense", r, defense_labels[(r.name, r.settings())]) for r in refs)
        _check_stage_order(specs)
        return specs

    pipelines = tuple(pipeline(p.defenses) for p in suite.pipelines)
    detectors = tuple(resolve(registry, "detector", ref, label)
                      for ref, label in zip(suite.detectors, suite.detector_labels()))
    probes = tuple((resolve(registry, "probe", ref, label), pipeline(ref.pipeline))
                   for ref, label in zip(suite.probes, suite.probe_labels()))
    targetable = {d.label: d for specs in [*pipelines, *(p for _, p in probes)] for d in specs}
    targetable.update({d.label: d for d in detectors})
    attacks = tuple(resolve(registry, "attack", ref, label, classnames,
                            tuple(targetable[t] for t in ref.targets or ()))
                    for ref, label in zip(suite.attacks, suite.attack_labels()))
    return _Builder(suite, attacks, pipelines, detectors, probes).plan()


def _faces(attack: PluginSpec | None, specs: tuple[PluginSpec, ...]) -> bool:
    """Whether ``attack`` runs against the pipeline or detector ``specs``: a plain attack against all of them,
    an adaptive one against no defense and what contains one of its targets."""
    if attack is None or not attack.adaptive:
        return True
    targeted = {t.label for t in attack.targets}
    return not specs or any(s.label in targeted for s in specs)


def _check_stage_order(specs: tuple[PluginSpec, ...]) -> None:
    stages = [STAGE_ORDER[d.stage] for d in specs]
    if stages != sorted(stages):
        order = " -> ".join(f"{d.label} ({d.stage})" for d in specs)
        raise BenchError(f"pipeline {order} is out of stage order; allowed order: train, post_train, inference")
    if sum(d.stage == "train" for d in specs) > 1:
        raise BenchError(f"pipeline {[d.label for d in specs]} has more than one train-stage defense")


class _Builder:
    """Lays out units: artifact units on first use, each cell unit after the artifacts it reads."""

    def __init__(self, suite: Suite, attacks, pipelines, detectors, probes):
        self.suite = suite
        self.config_hash = suite.config_hash()
        self.attacks, self.pipelines, self.detectors, self.probes = attacks, pipelines, detectors, probes
        self.units: dict[str, Unit] = {}
        self.clean_key = clean_model_key(suite.model, suite.data, suite.pretrain)

    def plan(self) -> Plan:
        s = self.suite
        for seed in s.seeds:
            for attack in [None, *self.attacks]:
                name = attack.label if attack else NO_ATTACK
                for specs, ref in zip(self.pipelines, s.pipelines):
                    if ref.runs_against(name) and _faces(attack, specs):
                        self._cell("eval", seed, attack, specs, specs)
                if attack is None:
                    continue
                for spec, ref in zip(self.detectors, s.detectors):
                    if ref.runs_against(name) and _faces(attack, (spec,)):
                        self._cell("detector", seed, attack, (), (spec,), plugin=spec)
                for (spec, pipe), ref in zip(self.probes, s.probes):
                    if ref.runs_against(name) and not (attack and attack.adaptive):
                        self._cell("probe", seed, attack, pipe, (spec, *pipe), plugin=spec)
        for attack in self.attacks:  # what the leaderboard shows of each trigger, drawn by the run
            deps = self._attack(s.seeds[0], attack)
            key = gallery_key(self.units[deps[0]].key, GALLERY_IMAGES)
            self._add(Unit(id=f"gallery:{key[:12]}", kind="gallery", key=key, seed=s.seeds[0], attack=attack,
                           deps=deps))
        return Plan(suite=s, config_hash=self.config_hash, units=tuple(self.units.values()), attacks=self.attacks,
                    pipelines=self.pipelines, detectors=self.detectors, probes=self.probes)

    def _add(self, unit: Unit) -> str:
        if unit.id not in self.units:
            upstream = tuple(self.units[d].key for d in unit.deps)
            self.units[unit.id] = unit.model_copy(update={"upstream": upstream})
        return unit.id

    def _pretrain(self) -> tuple[str, ...]:
        if self.suite.pretrain is None:
            return ()  # the clean model is the pretrained weights: nothing to compute
        return (self._add(Unit(id=f"pretrain:{self.clean_key[:12]}", kind="pretrain", key=self.clean_key)),)

    def _attack(self, seed: int, attack: PluginSpec | None) -> tuple[str, ...]:
        if attack is None:
            return ()
        key = attack_state_key(attack, self.clean_key, seed)
        return (self._add(Unit(id=f"attack:{key[:12]}", kind="attack", key=key, seed=seed, attack=attack,
                               deps=self._pretrain())),)

    def _model(self, seed: int, attack: PluginSpec | None, chain: tuple[PluginSpec, ...]) -> str:
        """The unit of the model after ``chain`` (train / post-train defenses only)."""
        key = model_key(self.suite.finetune, seed, self.clean_key, attack_state_key(attack, self.clean_key, seed),
                        chain)
        if chain and chain[-1].stage == "post_train":
            kind, deps = "post_train", (self._model(seed, attack, chain[:-1]),)
        else:
            kind, deps = "finetune", (*self._pretrain(), *self._attack(seed, attack))
        return self._add(Unit(id=f"{kind}:{key[:12]}", kind=kind, key=key, seed=seed, attack=attack, chain=chain,
                              deps=deps))

    def _cell(self, kind: str, seed: int, attack: PluginSpec | None, model_chain: tuple[PluginSpec, ...],
              parts: tuple[PluginSpec, ...], plugin: PluginSpec | None = None) -> None:
        key = cell_key(kind, self.config_hash, seed, attack, parts)
        defenses = tuple(d for d in parts if d.kind == "defense")
        cell = Cell(key=key, kind=kind, seed=seed, attack=attack.label if attack else NO_ATTACK,
                    pipeline=tuple(d.label for d in defenses),
                    detector=plugin.label if kind == "detector" else None,
                    probe=plugin.label if kind == "probe" else None,
                    attack_spec=attack, defense_specs=defenses, plugin_spec=plugin)
        chain = tuple(d for d in model_chain if d.stage != "inference")
        deps = [self._model(seed, attack, chain), *self._attack(seed, attack)]
        if kind == "eval" and attack is None and not defenses:
            deps += self._pretrain()  # this cell also scores the clean pretrained model
        self._add(Unit(id=f"{kind}:{key[:12]}", kind=kind, key=key, seed=seed, attack=attack, chain=chain,
                       cell=cell, deps=tuple(dict.fromkeys(deps))))
