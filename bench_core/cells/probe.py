"""Probe cells: an analysis of a (possibly defended) model on clean and triggered images."""

from __future__ import annotations

import time

from bench_core.cells.common import CellResult, sample, versions
from bench_core.interfaces import ProbeData
from bench_core.plan import Cell


def compute(cell: Cell, ws) -> CellResult:
    attack, spec, pipeline = cell.attack_spec, cell.plugin_spec, cell.defense_specs
    probe = spec.instantiate()
    clf = ws.classifier(cell.seed, attack, pipeline)
    ev = ws.data.evaluation
    clean_idx, trig_idx = sample(ev.labels, cell.seed, attack.target_class, ws.suite.evaluation.probe_samples,
                                 "probe")
    triggered = ws.triggered(attack, cell.seed)
    data = ProbeData(ev.images[clean_idx], ev.labels[clean_idx], triggered[trig_idx], ev.labels[trig_idx],
                     attack.target_class)
    started = time.perf_counter()
    result = probe.run(clf, data, ws.context(cell.seed, probe.threat_model.reads, attack))
    cost = {"seconds": time.perf_counter() - started}
    payload = result.model_dump(mode="json")
    payload["locality"] = attack.locality
    return CellResult(dict(result.summary), cost, payload, versions([spec, *pipeline], cell.attack_spec))
