"""Eval cells: a defense pipeline's zero-shot metrics on clean and triggered test images (paper Table 1)."""

from __future__ import annotations

import time

import torch

from bench_core.cells.common import CellResult, versions
from bench_core.metrics import classification_metrics, psnr, retrieval_metrics
from bench_core.plan import Cell, PluginSpec
from bench_core.zeroshot import Classifier, batched_logits


def compute(cell: Cell, ws) -> CellResult:
    attack, pipeline = cell.attack_spec, cell.defense_specs
    clf = ws.classifier(cell.seed, attack, pipeline)
    ev = ws.data.evaluation
    bs, workers = ws.suite.evaluation.batch_size, ws.suite.resources.loader_workers
    started = time.perf_counter()
    clean_logits = batched_logits(clf, ev.images, bs, workers)
    seconds = time.perf_counter() - started
    trig_logits = batched_logits(clf, ws.triggered(attack, cell.seed), bs, workers) if attack else None
    metrics = classification_metrics(clean_logits, ev.labels, trig_logits, ev.labels,
                                     attack.target_class if attack else None)
    reference = ws.data.reference
    if len(reference):  # the defender's validation accuracy: what calibration rules read (docs/world.md)
        ref_logits = batched_logits(clf, reference, bs, workers)
        metrics["ref_cacc"] = classification_metrics(ref_logits, ws.data.reference_labels, None, None, None)["cacc"]
    if attack is not None:
        metrics.update(attack_metrics(ws, attack, cell.seed))
    if ws.suite.evaluation.retrieval and (ws.suite.data.kind != "real" or ws.suite.data.retrieval):
        metrics.update(_retrieval(ws, clf))
    payload = {"threat_models": {d.label: d.threat_model for d in pipeline},
               "oracle": any(d.oracle for d in pipeline)}
    if attack is None and not pipeline:
        base = ws.zero_shot(ws.clean_model())
        metrics["cacc_pretrained"] = classification_metrics(batched_logits(base, ev.images, bs, workers), ev.labels,
                                                            None, None, None)["cacc"]
    passes = 1.0
    for d in pipeline:
        if d.stage == "inference":
            passes *= d.instantiate().forward_passes_per_image()
    cost = {"seconds": seconds, "ms_per_image": 1000 * seconds / max(1, len(ev.images)),
            "forward_passes_per_image": passes}
    return CellResult(metrics, cost, payload, versions(pipeline, attack))


def attack_metrics(ws, attack: PluginSpec, seed: int) -> dict[str, float]:
    """Per-attack numbers reported with every eval cell: poison count, PSNR, the attack's own stats."""
    poisoning = ws.poisoning(attack, seed)
    n_pairs = len(ws.data.finetune)
    out = {"attack_psnr_db": psnr(ws.data.evaluation.images, ws.triggered(attack, seed)),
           "attack_n_poison": float(len(poisoning.poisoned)),
           "attack_poison_fraction": len(poisoning.poisoned) / n_pairs}
    out.update({f"attack_{k}": float(v) for k, v in poisoning.stats.items()})
    # sorted: a state loaded from the cache lists its tensors in another order than a freshly prepared one
    state = sorted(ws.attack(attack, seed).state.items())
    out.update({f"attack_{k.removeprefix('metric_')}": float(v) for k, v in state
                if k.startswith("metric_") and v.ndim == 0})
    return out


def _retrieval(ws, clf: Classifier) -> dict[str, float]:
    pairs = ws.data.retrieval
    bs = ws.suite.evaluation.batch_size
    with torch.no_grad():
        img = torch.cat([clf.image_embeddings(pairs.images[i:i + bs]).cpu() for i in range(0, len(pairs), bs)])
        txt = torch.cat([clf.model.encode_text(list(pairs.captions[i:i + bs])).cpu()
                         for i in range(0, len(pairs), bs)])
    return retrieval_metrics(img, txt)
