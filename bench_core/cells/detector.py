"""Detector cells: a detector fitted on the undefended model, scored on clean vs triggered non-target images
(paper Table 2)."""

from __future__ import annotations

import time

from bench_core.cells.common import CellResult, sample, versions
from bench_core.metrics import auroc, tpr_at_fpr
from bench_core.plan import Cell


def compute(cell: Cell, ws) -> CellResult:
    attack, spec = cell.attack_spec, cell.plugin_spec
    detector = spec.instantiate()
    detector.fit(ws.classifier(cell.seed, attack, ()), ws.context(cell.seed, detector.threat_model.reads, attack))
    ev = ws.data.evaluation
    clean_idx, trig_idx = sample(ev.labels, cell.seed, attack.target_class, ws.suite.evaluation.detector_samples,
                                 "detector")
    started = time.perf_counter()
    s_clean = detector.score(ev.images[clean_idx]).float().cpu()
    seconds = time.perf_counter() - started
    s_trig = detector.score(ws.triggered(attack, cell.seed)[trig_idx]).float().cpu()
    metrics = {"auroc": auroc(s_clean, s_trig), "tpr_at_5fpr": tpr_at_fpr(s_clean, s_trig, 0.05)}
    cost = {"seconds": seconds, "ms_per_image": 1000 * seconds / max(1, len(clean_idx)),
            "forward_passes_per_image": float(detector.forward_passes_per_image())}
    payload = {"threat_model": spec.threat_model, "oracle": spec.oracle,
               "n_clean": len(clean_idx), "n_triggered": len(trig_idx)}
    return CellResult(metrics, cost, payload, versions([spec], cell.attack_spec))
