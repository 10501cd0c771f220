"""``bdbench stress``: the suite that stress-tests one defense or detector with every adaptive attack for it.

An adaptive attack (:class:`bench_core.interfaces.AdaptiveAttack`) says which plugins it is a stress test for
(:meth:`~bench_core.interfaces.AdaptiveAttack.applies_to`, from the plugin's kind, name, stage and declared
reads — so defense-agnostic attacks apply to third-party plugins too). The stress suite keeps a base suite's
shared settings and seeds, runs each applicable adaptive attack against the plugin and without a defense,
and its plain counterpart beside it; the adaptive report is then written for that plugin alone.
"""

from __future__ import annotations

from typing import Any, Literal

from bench_core.errors import BenchError
from bench_core.interfaces import AdaptiveAttack
from bench_core.keys import NO_ATTACK
from bench_core.registry import PluginRegistry
from bench_core.suite import DetectorRef, PipelineRef, PluginRef, Suite


def applicable_attacks(registry: PluginRegistry, kind: Literal["defense", "detector"], name: str) -> list[str]:
    """Names of the registered adaptive attacks that stress-test plugin ``name`` of ``kind``."""
    cls = registry.of(kind).get(name)  # unknown name: an error suggesting the nearest
    stage = getattr(cls, "stage", None)
    reads = frozenset(cls.threat_model.reads)
    out = []
    for attack in registry.attacks.names():
        attack_cls = registry.attacks.get(attack)
        if issubclass(attack_cls, AdaptiveAttack) and attack_cls.applies_to(kind, name, stage, reads):
            out.append(attack)
    return out


def stress_suite(base: Suite, registry: PluginRegistry, kind: Literal["defense", "detector"], name: str,
                 config: dict[str, Any] | None = None) -> Suite:
    """The stress suite of plugin ``name`` (with ``config``, else the base suite's entry of it, else its
    defaults) on ``base``'s shared settings and seeds. Attacks the base suite lists keep its configs."""
    attacks = applicable_attacks(registry, kind, name)
    if not attacks:
        adaptive = [a for a in registry.attacks.names() if issubclass(registry.attacks.get(a), AdaptiveAttack)]
        raise BenchError(f"no adaptive attack applies to {kind} {name!r}; the adaptive attacks are "
                         f"{', '.join(adaptive) or 'none (install bdbench-adaptive)'}")
    listed = {ref.name: ref for ref in base.attacks}
    target = PluginRef(name=name, config=config if config is not None else _base_config(base, kind, name))
    plain = sorted({registry.attacks.get(a).plain for a in attacks} - {NO_ATTACK, None})
    refs = [PluginRef(name=p, config=listed[p].config if p in listed else {}) for p in plain]
    refs += [PluginRef(name=a, config=listed[a].config if a in listed else {}, targets=[name]) for a in attacks]
    raw = base.model_dump(exclude={"attacks", "pipelines", "detectors", "probes", "name", "description"})
    return Suite.model_validate({
        **raw, "name": f"stress-{name}", "description": f"adaptive stress tests of {kind} {name} on {base.name}'s settings",
        "attacks": refs,
        "pipelines": [PipelineRef(), PipelineRef(defenses=[target])] if kind == "defense" else [PipelineRef()],
        "detectors": [DetectorRef(**target.model_dump())] if kind == "detector" else [], "probes": []})


def _base_config(base: Suite, kind: str, name: str) -> dict[str, Any]:
    entries = ([d for p in base.pipelines for d in p.defenses] if kind == "defense" else list(base.detectors))
    for ref in entries:
        if ref.name == name:
            return dict(ref.config)
    return {}
