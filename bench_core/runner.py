"""The runner: expands a suite into cells, trains each model once, evaluates, stores every cell as it finishes.

Work is organised per (seed, attack): the attack is prepared (cached), the fine-tune set poisoned, and each
distinct train-stage defense prefix of the suite's pipelines yields one fine-tuned model (cached), each
post-train prefix one repaired model (cached); inference defenses, detectors and probes reuse those models.
A (seed, attack) whose cells are all stored is skipped without touching data or models, so a second run of
the same suite only reads the store. A failing cell is stored with status ``error`` and the run goes on.
"""

from __future__ import annotations

import copy
import sys
import time
import traceback
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable

import torch

from bench_core import __version__ as CORE_VERSION
from bench_core.cache import Cache, content_key, state_dict_tensors
from bench_core.data.bundle import DataBundle
from bench_core.interfaces import (
    Attack, AttackInfo, Defense, Detector, InferenceDefense, PairSet, Plugin, PoisonResult, PostTrainDefense, Probe,
    ProbeData, RunContext, TrainDefense,
)
from bench_core.metrics import auroc, classification_metrics, psnr, retrieval_metrics, tpr_at_fpr
from bench_core.models import ClipModel, build_model, pick_device
from bench_core.registry import PluginRegistry, default_registry
from bench_core.store import ResultRecord, ResultStore
from bench_core.suite import NO_ATTACK, PluginRef, Suite
from bench_core.training import train_contrastive
from bench_core.zeroshot import Classifier, ZeroShotClassifier, batched_logits

STAGE_ORDER = {"train": 0, "post_train": 1, "inference": 2}


def plugin_id(plugin: Plugin) -> str:
    """name@version:confighash — what every cache key and cell key is built from."""
    return f"{plugin.name}@{plugin.version}:{content_key('config', plugin.name, plugin.version, plugin.config)[:10]}"


@dataclass(frozen=True)
class Cell:
    """One row of the results store: an evaluation, a detector run or a probe run."""

    key: str
    kind: str  # "eval" | "detector" | "probe"
    seed: int
    attack: str
    pipeline: tuple[str, ...] = ()
    detector: str | None = None
    probe: str | None = None


class Runner:
    """Runs one suite against a registry, a cache and a results store."""

    def __init__(self, suite: Suite, registry: PluginRegistry | None = None, store: ResultStore | None = None,
                 cache: Cache | None = None, log: Callable[[str], None] | None = None):
        self.suite = suite
        self.registry = registry or default_registry()
        self.store = store or ResultStore()
        self.cache = cache or Cache()
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.device = pick_device(suite.device)
        self.config_hash = suite.config_hash()
        # Instantiate every plugin up front: unknown names and bad configs fail before any work starts.
        self.attacks: dict[str, Attack] = {a.name: self._create("attack", a) for a in suite.attacks}
        self.pipelines: list[tuple[Defense, ...]] = [self._pipeline(p.defenses) for p in suite.pipelines]
        self.detectors: dict[str, Detector] = {d.name: self._create("detector", d) for d in suite.detectors}
        self.probes: list[tuple[Probe, tuple[Defense, ...]]] = [
            (self._create("probe", p), self._pipeline(p.pipeline)) for p in suite.probes]

    # --- set-up ---------------------------------------------------------------------------------------------
    def _create(self, kind: str, ref: PluginRef) -> Plugin:
        return self.registry.create(kind, ref.name, ref.config, ref.preset)

    def _pipeline(self, refs: list[PluginRef]) -> tuple[Defense, ...]:
        from bench_core.errors import BenchError

        defenses = tuple(self._create("defense", r) for r in refs)
        stages = [STAGE_ORDER[d.stage] for d in defenses]
        if stages != sorted(stages):
            order = " -> ".join(f"{d.name} ({d.stage})" for d in defenses)
            raise BenchError(f"pipeline {order} is out of stage order; allowed order: train, post_train, inference")
        if sum(d.stage == "train" for d in defenses) > 1:
            raise BenchError(f"pipeline {[d.name for d in defenses]} has more than one train-stage defense")
        return defenses

    @cached_property
    def data(self) -> DataBundle:
        return DataBundle(self.suite.data, self.suite.model.image_size)

    def versions(self, plugins: Iterable[Plugin]) -> dict[str, str]:
        out = {"bench_core": CORE_VERSION}
        out.update({p.name: p.version for p in plugins})
        return out

    # --- cell keys ------------------------------------------------------------------------------------------
    def _cell_key(self, kind: str, seed: int, attack: Attack | None, parts: Iterable[Plugin]) -> str:
        upstream = (plugin_id(attack) if attack else NO_ATTACK, *(plugin_id(p) for p in parts))
        return content_key("cell", kind, CORE_VERSION, {"suite": self.config_hash, "seed": seed}, upstream)

    def cells_for(self, seed: int, attack: Attack | None) -> list[Cell]:
        """The cells of one (seed, attack) that the suite's grid asks for; ``attack`` None is the clean model."""
        name = attack.name if attack else NO_ATTACK
        s = self.suite  # its entries are parallel to self.pipelines, self.detectors and self.probes
        cells = [Cell(self._cell_key("eval", seed, attack, p), "eval", seed, name, tuple(d.name for d in p))
                 for p, ref in zip(self.pipelines, s.pipelines) if ref.runs_against(name)]
        if attack is not None:
            cells += [Cell(self._cell_key("detector", seed, attack, [d]), "detector", seed, name, detector=d.name)
                      for d, ref in zip(self.detectors.values(), s.detectors) if ref.runs_against(name)]
            cells += [Cell(self._cell_key("probe", seed, attack, [p, *pipe]), "probe", seed, name,
                           tuple(d.name for d in pipe), probe=p.name)
                      for (p, pipe), ref in zip(self.probes, s.probes) if ref.runs_against(name)]
        return cells

    def all_cells(self) -> list[Cell]:
        return [c for seed in self.suite.seeds for a in [None, *self.attacks.values()] for c in self.cells_for(seed, a)]

    # --- models ---------------------------------------------------------------------------------------------
    def _model_from_cache(self, key: str) -> ClipModel | None:
        hit = self.cache.load(key)
        if hit is None:
            return None
        model = build_model(self.suite.model, self.device)
        model.clip.load_state_dict(hit[0])
        return model.eval()

    @cached_property
    def clean_model_key(self) -> str:
        return content_key("model", "clean", CORE_VERSION,
                           {"model": self.suite.model, "data": self.suite.data, "pretrain": self.suite.pretrain})

    def clean_model(self) -> ClipModel:
        """The clean CLIP: pretrained on the world once (cached), or the model's pretrained weights."""
        if self.suite.pretrain is None:
            return build_model(self.suite.model, self.device).eval()
        model = self._model_from_cache(self.clean_model_key)
        if model is not None:
            return model
        self.log(f"pretraining the clean model ({self.suite.model.label}, {len(self.data.pretrain)} pairs)")
        torch.manual_seed(0)
        model = build_model(self.suite.model, self.device)
        stats = train_contrastive(model, self.data.pretrain.images, list(self.data.pretrain.captions),
                                  self.suite.pretrain, seed=0, desc="pretrain")
        self.log(f"  pretrained in {stats['seconds']:.0f}s, final loss {stats['loss']:.3f}")
        self.cache.save(self.clean_model_key, state_dict_tensors(model.clip), {"stats": stats})
        return model

    def attack_key(self, attack: Attack | None, seed: int) -> str:
        """Cache key of an attack's prepared state (trigger, encoder, patch) for one seed."""
        if attack is None:
            return NO_ATTACK
        return content_key("attack_state", attack.name, attack.version, attack.config, (self.clean_model_key, str(seed)))

    def context(self, seed: int, reads: frozenset[str], attack: Attack | None = None,
                clean_model: ClipModel | None = None) -> RunContext:
        """A context holding only what ``reads`` declares (see :meth:`RunContext.restricted_to`)."""
        full = RunContext(
            seed=seed, device=self.device, classnames=self.data.classnames, templates=self.data.templates,
            write_caption=self.data.caption_writer(),
            clean_model=clean_model if "clean_model" in reads else None,
            finetune_pairs=self.data.finetune if "finetune_pairs" in reads else None,
            clean_reference=self.data.reference if "clean_reference" in reads else None,
            heldout=self.data.heldout if "heldout" in reads else None,
            attack=(AttackInfo(attack.name, attack.locality, attack.target_class)
                    if attack is not None and "attack" in reads else None))
        return full.restricted_to(reads)

    # --- the run --------------------------------------------------------------------------------------------
    def run(self) -> dict[str, int]:
        """Evaluate every pending cell; returns counts of cells computed, skipped (stored) and failed."""
        counts = {"computed": 0, "skipped": 0, "failed": 0}
        for seed in self.suite.seeds:
            for attack in [None, *self.attacks.values()]:
                cells = self.cells_for(seed, attack)
                pending = [c for c in cells if not self.store.done(c.key)]
                counts["skipped"] += len(cells) - len(pending)
                if not pending:
                    continue
                done, failed = _AttackRun(self, seed, attack, pending).run()
                counts["computed"] += done
                counts["failed"] += failed
        return counts


class _AttackRun:
    """Everything computed for one (seed, attack): shared models and data, then its pending cells."""

    def __init__(self, runner: Runner, seed: int, attack: Attack | None, pending: list[Cell]):
        self.r = runner
        self.seed = seed
        self.attack = attack
        self.pending = pending
        self.name = attack.name if attack else NO_ATTACK
        self._models: dict[tuple[str, ...], ClipModel] = {}
        self._zero_shot: dict[int, ZeroShotClassifier] = {}  # id(model) -> its plain classifier

    def run(self) -> tuple[int, int]:
        done = failed = 0
        for cell in self.pending:
            started = time.perf_counter()
            try:
                metrics, cost, payload, versions = self._evaluate(cell)
                record = self._record(cell, "ok", metrics, cost, payload, versions)
                done += 1
            except Exception as exc:  # one failing cell must not lose the others
                self.r.log(f"  FAILED {self._describe(cell)}: {type(exc).__name__}: {exc}")
                record = self._record(cell, "error", {}, {"seconds": time.perf_counter() - started}, {},
                                      {"bench_core": CORE_VERSION},
                                      error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
                failed += 1
            self.r.store.put(record)
        return done, failed

    def _describe(self, cell: Cell) -> str:
        what = cell.detector or cell.probe or (" -> ".join(cell.pipeline) or "no defense")
        return f"[seed {cell.seed}] {self.name} / {cell.kind} {what}"

    def _record(self, cell: Cell, status: str, metrics: dict, cost: dict, payload: dict, versions: dict,
                error: str | None = None) -> ResultRecord:
        return ResultRecord(key=cell.key, suite=self.r.suite.name, model=self.r.suite.model.label, attack=cell.attack,
                            defenses=list(cell.pipeline), detector=cell.detector, probe=cell.probe, seed=cell.seed,
                            status=status, metrics=metrics, cost=cost, payload=payload,
                            config_hash=self.r.config_hash, versions=versions, error=error)

    # --- shared, lazily computed pieces ---------------------------------------------------------------------
    @cached_property
    def clean_model(self) -> ClipModel:
        return self.r.clean_model()

    @cached_property
    def attack_key(self) -> str:
        return self.r.attack_key(self.attack, self.seed)

    @cached_property
    def prepared_attack(self) -> Attack | None:
        """The attack with its trigger state prepared once per (attack, clean model, seed) and cached."""
        if self.attack is None:
            return None
        hit = self.r.cache.load(self.attack_key)
        if hit is None:
            ctx = self.r.context(self.seed, self.attack.threat_model.reads, clean_model=self.clean_model)
            started = time.perf_counter()
            state = self.attack.prepare(ctx)
            self.r.cache.save(self.attack_key, state, {"seconds": time.perf_counter() - started})
        else:
            state = hit[0]
        self.attack.load_state(state)
        return self.attack

    @cached_property
    def attack_ctx(self) -> RunContext:
        reads = self.attack.threat_model.reads if self.attack else frozenset()
        return self.r.context(self.seed, reads, clean_model=self.clean_model if "clean_model" in reads else None)

    @cached_property
    def poisoning(self) -> PoisonResult | None:
        if self.prepared_attack is None:
            return None
        return self.prepared_attack.poison(self.r.data.finetune, self.attack_ctx)

    @property
    def training_pairs(self) -> PairSet:
        """The fine-tune pairs as the victim receives them (poisoned unless attack is none)."""
        return self.r.data.finetune if self.poisoning is None else self.poisoning.pairs

    @cached_property
    def attack_metrics(self) -> dict[str, float]:
        """Per-attack numbers reported with every eval cell: poison count, PSNR, the attack's own stats."""
        if self.attack is None:
            return {}
        out = {"attack_psnr_db": psnr(self.r.data.evaluation.images, self.triggered),
               "attack_n_poison": float(len(self.poisoning.poisoned)),
               "attack_poison_fraction": len(self.poisoning.poisoned) / len(self.r.data.finetune)}
        out.update({f"attack_{k}": float(v) for k, v in self.poisoning.stats.items()})
        out.update({f"attack_{k.removeprefix('metric_')}": float(v) for k, v in self.prepared_attack.state.items()
                    if k.startswith("metric_") and v.ndim == 0})
        return out

    @cached_property
    def triggered(self) -> torch.Tensor:
        """Triggered copies of the evaluation images (all classes; metrics filter the target class)."""
        images = self.r.data.evaluation.images
        return self.prepared_attack.apply_trigger(images, self.attack_ctx, train=False).clamp(0, 1)

    def model_for(self, defenses: tuple[Defense, ...]) -> ClipModel:
        """The model after the train and post-train defenses of ``defenses`` (inference ones excluded)."""
        chain = tuple(d for d in defenses if d.stage != "inference")
        if chain in self._models:
            return self._models[chain]
        key = content_key("model", "finetuned", CORE_VERSION, {"finetune": self.r.suite.finetune, "seed": self.seed},
                          (self.r.clean_model_key, self.attack_key, *(plugin_id(d) for d in chain)))
        model = self.r._model_from_cache(key)
        if model is None:
            if chain and chain[-1].stage == "post_train":
                model = copy.deepcopy(self.model_for(chain[:-1]))
                defense: PostTrainDefense = chain[-1]
                self.r.log(f"[seed {self.seed}] {self.name}: post-train defense {defense.name}")
                torch.manual_seed(self.seed)
                stats = defense.repair(model, self.r.context(self.seed, defense.threat_model.reads, self.attack))
            else:
                model, stats = self._finetune(chain[0] if chain else None)
            model.eval()
            self.r.cache.save(key, state_dict_tensors(model.clip), {"stats": stats})
        self._models[chain] = model
        return model

    def _finetune(self, train_defense: TrainDefense | None) -> tuple[ClipModel, dict[str, float]]:
        pairs, repeat = self.training_pairs, None
        if train_defense is not None:
            plan = train_defense.plan_training(pairs, self.r.context(self.seed, train_defense.threat_model.reads,
                                                                       self.attack))
            pairs, repeat = plan.pairs, plan.repeat
        base = self.clean_model  # pretrains first when not cached, so the log reads in order
        what = f"{self.name}" + (f" + {train_defense.name}" if train_defense else "")
        self.r.log(f"[seed {self.seed}] fine-tuning on {len(pairs)} pairs ({what})")
        model = copy.deepcopy(base)
        torch.manual_seed(self.seed)
        stats = train_contrastive(model, pairs.images, list(pairs.captions), self.r.suite.finetune,
                                  seed=self.seed, desc=f"finetune {what}", repeat=repeat)
        self.r.log(f"  fine-tuned in {stats['seconds']:.0f}s, final loss {stats['loss']:.3f}")
        return model, stats

    def classifier_for(self, defenses: tuple[Defense, ...]) -> Classifier:
        model = self.model_for(defenses)
        # class embeddings depend only on the model: build them once per model, not once per cell
        if id(model) not in self._zero_shot:
            self._zero_shot[id(model)] = ZeroShotClassifier.build(model, self.r.data.classnames, self.r.data.templates)
        clf: Classifier = self._zero_shot[id(model)]
        for d in defenses:
            if d.stage in ("train", "inference"):
                clf = d.wrap(clf, self.r.context(self.seed, d.threat_model.reads, self.attack))
        return clf

    # --- cells ----------------------------------------------------------------------------------------------
    def _evaluate(self, cell: Cell) -> tuple[dict, dict, dict, dict]:
        if cell.kind == "eval":
            return self._eval_cell(cell)
        if cell.kind == "detector":
            return self._detector_cell(self.r.detectors[cell.detector])
        probe, pipeline = next((p, pipe) for p, pipe in self.r.probes
                               if p.name == cell.probe and tuple(d.name for d in pipe) == cell.pipeline)
        return self._probe_cell(probe, pipeline)

    def _eval_cell(self, cell: Cell) -> tuple[dict, dict, dict, dict]:
        pipeline = next(p for p in self.r.pipelines if tuple(d.name for d in p) == cell.pipeline)
        clf = self.classifier_for(pipeline)
        ev = self.r.data.evaluation
        bs = self.r.suite.evaluation.batch_size
        started = time.perf_counter()
        clean_logits = batched_logits(clf, ev.images, bs)
        seconds = time.perf_counter() - started
        trig_logits = batched_logits(clf, self.triggered, bs) if self.attack else None
        target = self.attack.target_class if self.attack else None
        metrics = classification_metrics(clean_logits, ev.labels, trig_logits, ev.labels, target)
        metrics.update(self.attack_metrics)
        if self.r.suite.evaluation.retrieval and (self.r.suite.data.kind == "world" or self.r.suite.data.retrieval):
            metrics.update(self._retrieval(clf))
        payload: dict = {"threat_models": {d.name: d.threat_model.tag for d in pipeline},
                         "oracle": any(d.threat_model.oracle for d in pipeline)}
        if self.attack is None and not pipeline:
            base = ZeroShotClassifier.build(self.clean_model, self.r.data.classnames, self.r.data.templates)
            metrics["cacc_pretrained"] = classification_metrics(batched_logits(base, ev.images, bs), ev.labels,
                                                                None, None, None)["cacc"]
        passes = 1.0
        for d in pipeline:
            if isinstance(d, InferenceDefense):
                passes *= d.forward_passes_per_image()
        cost = {"seconds": seconds, "ms_per_image": 1000 * seconds / max(1, len(ev.images)),
                "forward_passes_per_image": passes}
        return metrics, cost, payload, self.r.versions(pipeline)

    def _retrieval(self, clf: Classifier) -> dict[str, float]:
        pairs = self.r.data.retrieval
        bs = self.r.suite.evaluation.batch_size
        with torch.no_grad():
            img = torch.cat([clf.image_embeddings(pairs.images[i:i + bs]).cpu() for i in range(0, len(pairs), bs)])
            txt = torch.cat([clf.model.encode_text(list(pairs.captions[i:i + bs])).cpu()
                             for i in range(0, len(pairs), bs)])
        return retrieval_metrics(img, txt)

    def _sample(self, n: int, salt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``n`` clean evaluation indices and ``n`` triggered non-target indices (fixed per seed)."""
        ev = self.r.data.evaluation
        g = torch.Generator().manual_seed(self.seed * 7919 + len(salt))
        clean_idx = torch.randperm(len(ev.images), generator=g)[:n]
        nontarget = (ev.labels != self.attack.target_class).nonzero().flatten()
        trig_idx = nontarget[torch.randperm(len(nontarget), generator=g)[:n]]
        return clean_idx, trig_idx

    def _detector_cell(self, detector: Detector) -> tuple[dict, dict, dict, dict]:
        clf = self.classifier_for(())
        detector.fit(clf, self.r.context(self.seed, detector.threat_model.reads, self.attack))
        clean_idx, trig_idx = self._sample(self.r.suite.evaluation.detector_samples, "detector")
        started = time.perf_counter()
        s_clean = detector.score(self.r.data.evaluation.images[clean_idx]).float().cpu()
        seconds = time.perf_counter() - started
        s_trig = detector.score(self.triggered[trig_idx]).float().cpu()
        metrics = {"auroc": auroc(s_clean, s_trig), "tpr_at_5fpr": tpr_at_fpr(s_clean, s_trig, 0.05)}
        cost = {"seconds": seconds, "ms_per_image": 1000 * seconds / max(1, len(clean_idx)),
                "forward_passes_per_image": float(detector.forward_passes_per_image())}
        payload = {"threat_model": detector.threat_model.tag, "oracle": detector.threat_model.oracle,
                   "n_clean": len(clean_idx), "n_triggered": len(trig_idx)}
        return metrics, cost, payload, self.r.versions([detector])

    def _probe_cell(self, probe: Probe, pipeline: tuple[Defense, ...]) -> tuple[dict, dict, dict, dict]:
        clf = self.classifier_for(pipeline)
        clean_idx, trig_idx = self._sample(self.r.suite.evaluation.probe_samples, "probe")
        ev = self.r.data.evaluation
        data = ProbeData(ev.images[clean_idx], ev.labels[clean_idx], self.triggered[trig_idx], ev.labels[trig_idx],
                         self.attack.target_class)
        started = time.perf_counter()
        result = probe.run(clf, data, self.r.context(self.seed, probe.threat_model.reads, self.attack))
        cost = {"seconds": time.perf_counter() - started}
        payload = result.model_dump(mode="json")
        payload["locality"] = self.attack.locality
        return dict(result.summary), cost, payload, self.r.versions([probe, *pipeline])
