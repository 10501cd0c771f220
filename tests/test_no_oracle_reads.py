"""Threat-model honesty, for every registered defense, detector and probe (parametrized over the registry).

Each plugin runs through a context made by :meth:`RunContext.restricted_to` from its own
``threat_model.reads``: every declarable field it did not declare is None there, so a plugin that touches an
undeclared field fails (``ctx.require`` raises; plain attribute use meets None). Only ``attack`` — the attack's
identity and type — is oracle knowledge: a plugin that reads it must be tagged oracle.

What no plugin can read at all, by construction: test labels and triggered test images are not fields of
:class:`RunContext` (the runner hands evaluation images to ``score`` / ``logits`` / ``ProbeData`` only after
a plugin has been fitted), and the clean reference carries no labels.

Cost: every stage runs for real on the miniature world, with training configs shrunk where a plugin has
them (``epochs`` = 1, ``batch_size`` = 16, see :data:`CHEAP`) — fewer steps change no read. Nothing is skipped.
"""

from __future__ import annotations

import copy

import pytest
import torch

from bench_core import (
    AttackInfo, Detector, InferenceDefense, PostTrainDefense, Probe, ProbeData, ProbeResult, RunContext, TrainDefense,
    ZeroShotClassifier,
)
from bench_core.registry import default_registry

from conftest import make_context

KINDS = ("defense", "detector", "probe")
CHEAP = {"epochs": 1, "batch_size": 16}  # applied to the config fields a plugin has; reads do not depend on them
TARGET = 0


def _plugins(kinds=KINDS) -> list[tuple[str, str]]:
    registry = default_registry()
    return [(kind, name) for kind in kinds for name in registry.of(kind).names()]


def _cls(kind: str, name: str):
    return default_registry().of(kind).get(name)


@pytest.mark.parametrize("kind,name", _plugins(("attack", *KINDS)))
def test_reads_are_declarable(kind, name):
    reads = _cls(kind, name).threat_model.reads
    assert set(reads) <= RunContext.DECLARABLE, f"{kind} {name} reads {sorted(set(reads) - RunContext.DECLARABLE)}"


@pytest.mark.parametrize("kind,name", _plugins())
def test_only_oracles_know_the_attack(kind, name):
    tm = _cls(kind, name).threat_model
    if not tm.oracle:
        assert "attack" not in tm.reads, f"{kind} {name} reads the attack but is not tagged oracle"
    else:
        assert tm.tag.startswith("ORACLE")


def test_decomp_rep_oracle_is_an_oracle():
    tm = _cls("defense", "decomp_rep.oracle").threat_model
    assert "attack" in tm.reads and tm.oracle and tm.tag.startswith("ORACLE")


@pytest.fixture(scope="module")
def world(tiny_model, tiny_data):
    """A full context (every declarable field set, attack known), a plain classifier and evaluation data."""
    full = make_context(tiny_data, model=tiny_model, attack=AttackInfo("badnet", "local", TARGET))
    assert all(getattr(full, f) is not None for f in RunContext.DECLARABLE)
    clf = ZeroShotClassifier.build(tiny_model, tiny_data.classnames, tiny_data.templates)
    ev = tiny_data.evaluation
    images = ev.images[:12]
    nontarget = (ev.labels != TARGET).nonzero().flatten()[:10]
    triggered = ev.images[nontarget].clone()
    triggered[:, :, :4, :4] = 1.0
    data = ProbeData(images, ev.labels[:12], triggered, ev.labels[nontarget], TARGET)
    return full, clf, data


@pytest.mark.parametrize("kind,name", _plugins())
def test_runs_on_only_what_it_declares(kind, name, world, tiny_model, tiny_data):
    full, clf, data = world
    cls = _cls(kind, name)
    ctx = full.restricted_to(cls.threat_model.reads)
    for field in RunContext.DECLARABLE - cls.threat_model.reads:
        assert getattr(ctx, field) is None
    plugin = cls({k: v for k, v in CHEAP.items() if k in cls.Config.model_fields})
    images, n_classes = data.clean_images, len(tiny_data.classnames)

    if isinstance(plugin, TrainDefense):
        plan = plugin.plan_training(tiny_data.finetune, ctx)
        assert len(plan.pairs) > 0
        _check_logits(plugin.wrap(clf, ctx).logits(images), len(images), n_classes)
    elif isinstance(plugin, PostTrainDefense):
        model = copy.deepcopy(tiny_model)
        plugin.repair(model, ctx)
        model.eval()
        repaired = ZeroShotClassifier.build(model, tiny_data.classnames, tiny_data.templates)
        _check_logits(repaired.logits(images), len(images), n_classes)
    elif isinstance(plugin, InferenceDefense):
        _check_logits(plugin.wrap(clf, ctx).logits(images), len(images), n_classes)
    elif isinstance(plugin, Detector):
        plugin.fit(clf, ctx)
        scores = plugin.score(images[:4])  # few: input detectors cost tens of forward passes per image
        assert scores.shape == (4,) and torch.isfinite(scores).all()
    elif isinstance(plugin, Probe):
        _run_probe(plugin, ctx, data, _probe_classifiers(clf, full, tiny_data))
    else:  # a defense of an unknown stage: the harness could not run it either
        pytest.fail(f"{kind} {name} is none of the known plugin roles")


def _probe_classifiers(clf, full: RunContext, tiny_data):
    """The plain classifier, then the classifier wrapped by each registered train-stage defense (a probe may
    study one, as ``pdb_robustness`` does PDB; probes declare no required pipeline, so each is tried)."""
    yield clf
    for name in default_registry().defenses.names():
        cls = _cls("defense", name)
        if issubclass(cls, TrainDefense):
            defense, ctx = cls(), full.restricted_to(cls.threat_model.reads)
            defense.plan_training(tiny_data.finetune, ctx)
            yield defense.wrap(clf, ctx)


def _run_probe(probe: Probe, ctx: RunContext, data: ProbeData, classifiers) -> None:
    """The probe must succeed on at least one candidate classifier; a read of an undeclared field fails on all."""
    errors = []
    for clf in classifiers:
        try:
            result = probe.run(clf, data, ctx)
        except Exception as exc:  # noqa: BLE001 — collected and reported below
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        assert isinstance(result, ProbeResult)
        return
    pytest.fail(f"probe {probe.name} failed on every candidate classifier: {errors}")


def _check_logits(logits: torch.Tensor, n: int, k: int) -> None:
    assert logits.shape == (n, k) and torch.isfinite(logits).all()
