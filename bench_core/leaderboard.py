"""The leaderboard, built from stored results only: first as data (:mod:`bench_core.report`), then rendered.

The suite is expanded into its plan (:func:`bench_core.plan.expand`, the very cells a run computes), and each
cell's row is read from the store by key, so every number traces to one stored run (``runs.md`` lists the
keys; the HTML page shows each number's provenance). Missing cells print "—"; failed cells print "error";
cells the suite's grid leaves out (an entry scoped to some attacks) print "not run". Several seeds -> mean ±
95% t-interval; one seed -> the value alone. Units and directions come from the metric metadata
(:mod:`bench_core.metrics`). Plugins add sections through the ``bdbench_report_sections`` hook; the core
names no plugin.

Formats: markdown (``README.md`` and one file per page), ``html`` (one self-contained ``index.html``),
``latex`` (booktabs tables under ``latex/``), ``csv`` (every number, long format) and ``json`` (the report
model).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Iterable

from bench_core import __version__ as CORE_VERSION
from bench_core.data import scene, world
from bench_core.environment import hardware_label
from bench_core.errors import BenchError
from bench_core.keys import NO_ATTACK
from bench_core.plan import Cell, Plan, PluginSpec, expand
from bench_core.report import (Column, Combo, Figure, Image, Page, Report, Row, Section, Stat, Table, Text,
                               bullets, heading, html_escape, link, md_escape, para,
                               filename, info_of, markdown_table, render_markdown)
from bench_core.store import ResultRecord, ResultStore
from bench_core.suite import Suite

CORE_PAGES = ("README", "defenses", "detectors", "probes", "runs")
"""Pages the core writes; a plugin section naming another page gets a page of its own (``adaptive.md``)."""
FORMATS = ("markdown", "html", "latex", "csv", "json")
DASH = "—"
NOT_RUN = "not run"
"""Printed where the suite's grid has no cell (an entry with ``attacks:`` that leaves this attack out)."""


class Board:
    """Stored results of one suite, grouped for the tables."""

    def __init__(self, suite: Suite, store: ResultStore | None = None, plan: Plan | None = None,
                 focus: str | None = None):
        from bench_core.registry import default_registry

        self.focus = focus  # a plugin name a report is about alone (bdbench stress); None: the whole suite
        self.runs_file = "runs.md"  # where the header says the cell keys are
        self.suite = suite
        self.plan = plan or expand(suite, default_registry())
        self.store = store or ResultStore()
        self.cells: list[Cell] = self.plan.cells
        self.records: dict[str, ResultRecord] = self.store.get_many(c.key for c in self.cells)
        self.attack_specs: dict[str, PluginSpec] = {a.label: a for a in self.plan.attacks}
        self.pipelines = self.plan.pipelines
        self.detectors = self.plan.detectors
        self.probes = self.plan.probes
        self.attacks = [NO_ATTACK, *self.attack_specs]
        # the core tables' columns: plain attacks (adaptive ones are compared on their own page)
        self.core_attacks = [NO_ATTACK, *(label for label, a in self.attack_specs.items() if not a.targets)]

    def runs_probe(self, probe: str) -> bool:
        """Whether the suite runs ``probe`` (by plugin name) on the undefended model (no pipeline)."""
        return any(p.name == probe and not pipe for p, pipe in self.probes)

    def mean_probe_summary(self, probe: str, attack: str) -> dict[str, float]:
        """A probe's summary (run without a pipeline) averaged over the stored seeds: the keys every seed has;
        empty when nothing is stored."""
        recs = self.ok(self.select(kind="probe", attack=attack, probe=probe, pipeline=()))
        if not recs:
            return {}
        keys = set.intersection(*(set(r.metrics) for r in recs))
        return {k: sum(r.metrics[k] for r in recs) / len(recs) for k in keys}

    def mean_eval_metric(self, attack: str, name: str) -> float | None:
        """``name`` of the no-defense cells of ``attack`` averaged over the stored seeds; None if none stored."""
        values = [r.metrics[name] for r in self.ok(self.select(kind="eval", attack=attack, pipeline=()))
                  if name in r.metrics]
        return sum(values) / len(values) if values else None

    def stat(self, cells: list[Cell], metric: str) -> Stat:
        """``metric`` (a result metric or a cost) of the stored ok ``cells`` (one per seed), with their seeds and
        keys; printed as "not run" when the grid has no such cell, "error" when only failures are stored."""
        if not cells:
            return Stat(metric=metric, missing=NOT_RUN)
        stat = Stat(metric=metric, missing="error" if self.errors(cells) and not self.ok(cells) else DASH)
        for c in cells:
            rec = self.records.get(c.key)
            if rec is None or rec.status != "ok":
                continue
            value = rec.metrics.get(metric, rec.cost.get(metric))
            if value is not None:
                stat.values.append(value)
                stat.seeds.append(c.seed)
                stat.keys.append(c.key)
        return stat

    def sections(self) -> list[Section]:
        """Every section plugins contribute through ``bdbench_report_sections``, sorted by (page, order)."""
        from bench_core.registry import default_plugin_manager

        out: list[Section] = []
        for contributed in default_plugin_manager().hook.bdbench_report_sections(board=self):
            out.extend(contributed or ())
        return sorted(out, key=lambda sec: (sec.page, sec.order, sec.title))

    def ok(self, cells: Iterable[Cell]) -> list[ResultRecord]:
        return [self.records[c.key] for c in cells if c.key in self.records and self.records[c.key].status == "ok"]

    def errors(self, cells: Iterable[Cell]) -> int:
        return sum(1 for c in cells if c.key in self.records and self.records[c.key].status == "error")

    def select(self, **match) -> list[Cell]:
        return [c for c in self.cells if all(getattr(c, k) == v for k, v in match.items())]

    def header(self, title: str) -> str:
        versions = {"bench_core": CORE_VERSION}
        for rec in self.records.values():
            versions.update(rec.versions)
        vtext = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        e = md_escape  # every value below is data (suite file, plugins, store): text, never markup
        return (f"# {e(title)}\n\n"
                f"- suite: <code>{html_escape(self.suite.name)}</code> — {e(self.suite.description.strip())}\n"
                f"- config hash: `{self.suite.config_hash()}`; model: {e(self.suite.model.label)}; "
                f"seeds: {', '.join(map(str, self.suite.seeds))}\n"
                f"- versions: {e(vtext)}\n"
                f"{'- grid: ' + e(self.scope_note().removeprefix('- grid: ').strip()) + chr(10) if self.scope_note() else ''}"
                f"- torch threads: {e(self.threads_note())}\n"
                f"- hardware: {e(self.hardware_note())}\n"
                f"- generated: {dt.date.today().isoformat()} from the results store "
                f"({sum(r.status == 'ok' for r in self.records.values())} of {len(self.cells)} cells stored; "
                f"cell keys in [{self.runs_file}]({self.runs_file}))\n\n"
                f"_Generated by `bdbench leaderboard`; do not edit by hand._\n")

    def threads_note(self) -> str:
        """The torch thread counts the stored cells were computed with (each record's ``env``). Float reductions
        depend on it and a fine-tune amplifies the difference, so cells computed at different counts are not
        bit-comparable; the note says so when they are mixed."""
        counts = Counter(r.env.get("threads") for r in self.records.values() if r.status == "ok")
        if not counts:
            return "none stored"
        if len(counts) == 1:
            return f"{next(iter(counts)) or 'unrecorded'} per unit (every stored cell)"
        ordered = sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
        parts = [f"{t if t is not None else 'unrecorded'} ({n} cells)" for t, n in ordered]
        return (", ".join(parts) + " — mixed: numbers computed at different thread counts differ beyond the last "
                "bits once a fine-tune amplifies float rounding; pin `resources.torch_threads` and rerun")

    def hardware_note(self) -> str:
        """The machines the stored cells were computed on (each record's ``env``); flagged when they differ,
        since other float kernels move a fine-tuned model's numbers by up to a few points."""
        counts = Counter(hardware_label(r.env) for r in self.records.values() if r.status == "ok")
        if not counts:
            return "none stored"
        if len(counts) == 1:
            return f"{next(iter(counts))} (every stored cell)"
        parts = [f"{label} ({n} cells)" for label, n in sorted(counts.items())]
        return (", ".join(parts) + " — mixed: CPUs with other vector extensions (or GPUs) run other float kernels, "
                "and a fine-tune amplifies the difference; compare numbers computed on one kind of machine")

    def scope_note(self) -> str:
        """A header line naming the grid entries that run against some attacks only ('' for a full grid)."""
        s = self.suite
        scoped = [((s.pipeline_label(p) or "[]").replace(" -> ", " → "), p.attacks)
                  for p in s.pipelines if p.attacks is not None]
        scoped += [(label, d.attacks) for d, label in zip(s.detectors, s.detector_labels()) if d.attacks is not None]
        scoped += [(s.probe_label(p).replace(" -> ", " → "), p.attacks) for p in s.probes if p.attacks is not None]
        if not scoped:
            return ""
        listed = "; ".join(f"{label} ({', '.join(attacks)})" for label, attacks in scoped)
        return (f"- grid: these entries run against the listed attacks only: {listed}; "
                f"their other cells print \"{NOT_RUN}\"\n")


ASR_TARGET, CACC_TOLERANCE = 0.90, 0.03
"""What a working attack must reach with no defense: ASR >= 90% with CACC within 3 points of the clean model."""


def attack_targets(board: Board) -> Table:
    """Per attack, whether its no-defense mean ASR / CACC meets :data:`ASR_TARGET` / :data:`CACC_TOLERANCE`
    against the clean fine-tuned model's mean CACC — shortfalls are stated, not hidden."""
    clean = board.mean_eval_metric(NO_ATTACK, "cacc")
    rows = []
    for name in board.attack_specs:
        a, c = board.mean_eval_metric(name, "asr"), board.mean_eval_metric(name, "cacc")
        if a is None or c is None or clean is None:
            continue
        ok = a >= ASR_TARGET and clean - c <= CACC_TOLERANCE
        why = [] if ok else ([f"ASR below {100 * ASR_TARGET:.0f}%"] if a < ASR_TARGET else []) + (
            [f"CACC {100 * (clean - c):.1f} points below clean"] if clean - c > CACC_TOLERANCE else [])
        rows.append(Row(cells=[Text(text=name), Text(text=f"{100 * a:.1f}"), Text(text=f"{100 * c:.1f}"),
                               Text(text="meets" if ok else "short: " + "; ".join(why))], tags={"attack": name}))
    return Table(name="attack_targets", rows=rows, columns=[
        Column(header="attack"), Column(header="ASR % (mean)"), Column(header="CACC % (mean)"),
        Column(header="target")])


def pipeline_label(pipeline: tuple) -> str:
    return " → ".join(d.label for d in pipeline) if pipeline else "no defense"


def _pipeline_tags(pipeline: tuple) -> dict[str, str]:
    return {"defense": pipeline_label(pipeline),
            "threat_model": "; ".join(f"{d.label}: {d.threat_model}" for d in pipeline) or "none"}


def defenses_table(board: Board) -> Table:
    """Rows: defense pipelines; columns: the clean model's CACC, then ASR / CACC per attack (paper Table 1)."""
    columns = [Column(header="defense pipeline"),
               *(Column(header=f"{a} ASR / CACC") if a != NO_ATTACK else Column(header="clean CACC")
                 for a in board.core_attacks)]
    rows = []
    for pipeline in board.pipelines:
        names = tuple(d.label for d in pipeline)
        cells: list = [Text(text=pipeline_label(pipeline))]
        for attack in board.core_attacks:
            selected = board.select(kind="eval", attack=attack, pipeline=names)
            if attack == NO_ATTACK or not selected:
                cells.append(board.stat(selected, "cacc"))
            else:
                cells.append(Combo(parts=[board.stat(selected, "asr"), board.stat(selected, "cacc")]))
        rows.append(Row(cells=cells, oracle=any(d.oracle for d in pipeline), tags=_pipeline_tags(pipeline)))
    return Table(name="defenses", columns=columns, rows=rows)


SECONDARY = ("cacc", "asr", "asr_all_images", "ra", "ece", "nll")
"""The "All metrics" columns; the clean model has no ASR or RA."""


def secondary_table(board: Board) -> Table:
    """Rows: (pipeline, attack); columns: :data:`SECONDARY`."""
    rows = []
    for pipeline in board.pipelines:
        names = tuple(d.label for d in pipeline)
        for attack in board.core_attacks:
            selected = board.select(kind="eval", attack=attack, pipeline=names)
            if not selected:
                continue  # not in the suite's grid
            cells: list = [Text(text=pipeline_label(pipeline)), Text(text=attack)]
            for key in SECONDARY:
                cells.append(board.stat(selected, key) if attack != NO_ATTACK or key in ("cacc", "ece", "nll")
                             else Text(text=DASH))
            rows.append(Row(cells=cells, oracle=any(d.oracle for d in pipeline),
                            tags={**_pipeline_tags(pipeline), "attack": attack}))
    headers = {"cacc": "CACC", "asr": "ASR", "asr_all_images": "ASR all images", "ra": "RA", "ece": "ECE",
               "nll": "NLL"}
    return Table(name="all_metrics", rows=rows, columns=[
        Column(header="defense pipeline"), Column(header="attack"),
        *(Column(header=headers[k], metric=k, digits=1) for k in SECONDARY)])


def attacks_table(board: Board) -> Table:
    """Per attack: locality, target, and every ``attack_*`` number the runner stored (PSNR, poison count, the
    statistics the attack reports of itself), from the no-defense cells, over seeds."""
    keys: list[str] = []
    for name in board.attack_specs:
        for rec in board.ok(board.select(kind="eval", attack=name, pipeline=())):
            keys += [k for k in rec.metrics if k.startswith("attack_") and k not in keys]
    rows = []
    for name, attack in board.attack_specs.items():
        selected = board.select(kind="eval", attack=name, pipeline=())
        names = {"world": world.CLASSES, "scene": scene.CLASSES}.get(board.suite.data.kind)
        target = names[attack.target_class] if names else attack.target_class
        rows.append(Row(cells=[Text(text=name), Text(text=attack.locality or "?"), Text(text=str(target)),
                               *(board.stat(selected, k) if selected else Text(text=DASH) for k in keys)],
                        tags={"attack": name}))
    columns = [Column(header="attack"), Column(header="type"), Column(header="target"),
               *(Column(header=info_of(k).label or k.removeprefix("attack_"), metric=k,
                        digits=None if info_of(k).percent else 2) for k in keys)]
    return Table(name="attacks", columns=columns, rows=rows)


def threat_table(board: Board) -> Table:
    rows, seen = [], set()
    for pipeline in board.pipelines:
        for d in pipeline:
            if d.label not in seen:
                seen.add(d.label)
                rows.append(Row(cells=[Text(text=t) for t in (d.label, d.stage or "", d.version, d.threat_model)],
                                oracle=d.oracle, tags={"defense": d.label, "threat_model": d.threat_model}))
    for d in board.detectors:
        rows.append(Row(cells=[Text(text=t) for t in (d.label, "detector", d.version, d.threat_model)],
                        oracle=d.oracle, tags={"detector": d.label, "threat_model": d.threat_model}))
    return Table(name="threat_models", rows=rows, columns=[Column(header=h) for h in
                                                           ("plugin", "stage", "version", "threat model")])


def detectors_table(board: Board) -> Table:
    """Rows: detectors; columns: AUROC (TPR at 5% FPR) per attack, then the mean cost (paper Table 2)."""
    attacks = [a for a in board.core_attacks if a != NO_ATTACK]
    rows = []
    for spec in board.detectors:
        cells: list = [Text(text=spec.label)]
        every = []
        for attack in attacks:
            selected = board.select(kind="detector", attack=attack, detector=spec.label)
            every += selected
            cells.append(Combo(parts=[board.stat(selected, "auroc"), board.stat(selected, "tpr_at_5fpr")],
                               template="{0} ({1})") if selected else Text(text=NOT_RUN))
        for cost in ("forward_passes_per_image", "ms_per_image"):
            stat = board.stat(every, cost)
            cells.append(stat.model_copy(update={"show_interval": False, "missing": DASH}))
        rows.append(Row(cells=cells, oracle=spec.oracle, tags={"detector": spec.label,
                                                               "threat_model": spec.threat_model}))
    return Table(name="detectors", rows=rows, columns=[
        Column(header="detector"), *(Column(header=f"{a} AUROC (TPR@5%FPR)") for a in attacks),
        Column(header="fwd passes / image", metric="forward_passes_per_image", digits=0),
        Column(header="ms / image", metric="ms_per_image", digits=2)])


def probe_sections(board: Board) -> list[Section]:
    """Per probe (and the pipeline it runs on) and attack: its tables averaged over seeds and its figures
    (first seed)."""
    out = []
    for i, (probe, pipeline) in enumerate(board.probes):
        name = probe.label
        names = tuple(d.label for d in pipeline)
        blocks: list = []
        for attack in (a for a in board.attacks if a != NO_ATTACK):
            cells = board.select(kind="probe", attack=attack, probe=name, pipeline=names)
            if not cells:
                continue  # the suite runs this probe against other attacks only
            recs = [(c, board.records[c.key]) for c in cells
                    if c.key in board.records and board.records[c.key].status == "ok"]
            if not recs:
                blocks += [heading(3, attack), para(f"{DASH} (not stored)")]
                continue
            first = recs[0][1]
            locality = first.payload.get("locality", "?")
            for table_name in first.payload.get("tables", {}):
                blocks.append(heading(3, f"{attack} ({locality}) — {table_name}"))
                blocks.append(merge_over_seeds(f"{name}_{attack}_{table_name}", [(c, r) for c, r in recs], table_name,
                                               {"attack": attack, "probe": name}))
            suffix = "_".join(names).replace(".", "-")
            for fig_name, spec in first.payload.get("figures", {}).items():
                blocks.append(Figure(name=filename(f"{name}_{attack}_{fig_name}{'_' + suffix if suffix else ''}"),
                                     spec=spec, caption=f"{name} {attack} {fig_name}"))
        out.append(Section(page="probes", title=name + (f" on {' → '.join(names)}" if names else ""),
                           order=100 + i, blocks=blocks))
    return out


def merge_over_seeds(table_id: str, recs: list[tuple[Cell, ResultRecord]], table_name: str,
                     tags: dict[str, str]) -> Table:
    """A probe's identically shaped table over seeds: numeric columns become stats (units from the metric
    metadata); an integer column equal in every seed (a layer, a head) stays as it is."""
    tables = [r.payload["tables"][table_name] for _, r in recs]
    first = tables[0]
    keys = list(dict.fromkeys(k for row in first for k in row))
    rows = []
    for i, row in enumerate(first):
        cells: list = []
        for key in keys:
            value = row.get(key)
            same = all(i < len(t) and t[i].get(key) == value for t in tables)
            if isinstance(value, int) and not isinstance(value, bool) and not info_of(key).percent and same:
                cells.append(Text(text=str(value)))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                present = [(c, t[i][key]) for (c, _), t in zip(recs, tables) if i < len(t) and key in t[i]]
                cells.append(Stat(metric=key, values=[float(v) for _, v in present], seeds=[c.seed for c, _ in present],
                                  keys=[c.key for c, _ in present]))
            else:
                cells.append(Text(text="" if value is None else str(value)))
        rows.append(Row(cells=cells, tags=tags))
    columns = [Column(header=k, metric=k, digits=None if info_of(k).percent else 3)
               if any(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) for r in first)
               else Column(header=k) for k in keys]
    return Table(name=filename(table_id), columns=columns, rows=rows)


def _merge_table_over_seeds(tables: list[list[dict]]) -> str:
    """:func:`merge_over_seeds` on bare tables (seed i = table i), as markdown; for tests."""
    from types import SimpleNamespace

    recs = [(SimpleNamespace(seed=i, key=f"seed{i}"), SimpleNamespace(payload={"tables": {"t": t}}))
            for i, t in enumerate(tables)]
    return markdown_table(merge_over_seeds("t", recs, "t", {}))


def runs_table(board: Board) -> Table:
    rows = []
    for c in board.cells:
        rec = board.records.get(c.key)
        what = c.detector or c.probe or (" → ".join(c.pipeline) or "no defense")
        rows.append(Row(cells=[Text(text=c.key[:12], keys=[c.key]), Text(text=c.kind), Text(text=c.attack),
                               Text(text=what), Text(text=str(c.seed)),
                               Text(text=rec.status if rec else "missing"),
                               Text(text=f"{rec.cost.get('seconds', 0):.1f}" if rec else DASH)],
                        tags={"attack": c.attack, "kind": c.kind}))
    return Table(name="runs", rows=rows, columns=[Column(header=h) for h in (
        "cell key", "kind", "attack", "defense / detector / probe", "seed", "status", "seconds")])


# --- the report ---------------------------------------------------------------------------------------------

def build_report(board: Board, galleries: dict[str, Path] | None = None) -> Report:
    """The whole leaderboard as data: the core pages, plugin sections (their own pages or core ones) and the
    provenance of every stored cell."""
    suite = board.suite
    sections = board.sections()
    clean_stat = board.stat(board.select(kind="eval", attack=NO_ATTACK, pipeline=()), "cacc")
    from bench_core.report import format_stat

    clean_cacc = format_stat(clean_stat)
    pages = [
        Page(name="defenses", title=f"Defenses — {suite.name}", sections=[
            Section(page="defenses", title="", order=0, blocks=[
                para("Cells: attack success rate (non-target triggered test images classified as the target) "
                     "/ clean zero-shot accuracy, in percent. Shaped like the paper's Table 1."),
                defenses_table(board)]),
            Section(page="defenses", title="Attack targets", order=1, blocks=[
                para(f"No defense, mean over seeds; target: ASR >= {100 * ASR_TARGET:.0f}% with CACC within "
                     f"{100 * CACC_TOLERANCE:.0f} points of the clean fine-tuned model ({clean_cacc}%)."),
                attack_targets(board)]),
            Section(page="defenses", title="Attacks", order=2, blocks=_with_definitions(
                "No-defense cells, over seeds: what the runner measures of every attack (PSNR, poisoned pairs) and "
                "the statistics each attack reports of itself. Columns:", attacks_table(board))),
            Section(page="defenses", title="Threat models", order=3, blocks=[threat_table(board)]),
            Section(page="defenses", title="All metrics", order=4, blocks=[
                para("ASR (all images) is the paper's variant that also counts target-class images; RA = "
                     "triggered non-target images classified as their true class; ECE and NLL on clean "
                     "test images."),
                secondary_table(board)])]),
        Page(name="detectors", title=f"Detectors — {suite.name}", sections=[
            Section(page="detectors", title="", order=0, blocks=[
                para("AUROC (TPR at 5% FPR) in percent, from continuous scores: clean test images vs "
                     "triggered non-target test images. Cost: model forward passes and milliseconds per "
                     "scored image. Shaped like the paper's Table 2."),
                detectors_table(board)])]),
        Page(name="probes", title=f"Probes — {suite.name}",
             sections=[s for s in sections if s.page == "probes"] + probe_sections(board)),
    ]
    own = sorted({s.page for s in sections} - set(CORE_PAGES))
    pages += [Page(name=p, title=f"{p.capitalize()} — {suite.name}", sections=[s for s in sections if s.page == p])
              for p in own]
    pages.append(Page(name="runs", title=f"Stored runs — {suite.name}", sections=[
        Section(page="runs", title="", order=0, blocks=[runs_table(board)])]))
    pretrained = format_stat(board.stat(board.select(kind="eval", attack=NO_ATTACK, pipeline=()), "cacc_pretrained"))
    readme = [para(f"Clean pretrained model: zero-shot CACC {pretrained}%; after the clean fine-tune: "
                   f"{clean_cacc}%."),
              bullets([link("Defenses", "defenses"), " (paper Table 1)"],
                      [link("Detectors", "detectors"), " (paper Table 2)"],
                      [link("Probes", "probes"), " (paper Fig. 1–5 and 8; plugins' checks such as the paper's Findings)"],
                      *([link(p.capitalize(), p), " (contributed by a plugin package)"] for p in own),
                      [link("Stored runs", "runs")])]
    if galleries:
        readme.append(heading(2, "Trigger galleries"))
        readme += [Image(file=path.name, alt=name) for name, path in galleries.items()]
    pages.insert(0, Page(name="README", title=f"bdbench leaderboard — {suite.name}",
                         sections=[Section(page="README", title="", order=0, blocks=readme)]))
    versions = {"bench_core": CORE_VERSION}
    for rec in board.records.values():
        versions.update(rec.versions)
    return Report(suite=suite.name, description=suite.description.strip(), config_hash=suite.config_hash(),
                  model=suite.model.label, seeds=list(suite.seeds), versions=dict(sorted(versions.items())),
                  scope=board.scope_note().removeprefix("- grid: ").strip(), threads=board.threads_note(), hardware=board.hardware_note(),
                  generated=dt.date.today().isoformat(),
                  stored=sum(r.status == "ok" for r in board.records.values()), total=len(board.cells),
                  pages=pages, provenance={k: _provenance(r) for k, r in board.records.items()})


def _with_definitions(intro: str, table: Table) -> list:
    """``intro``, a bullet per metric column with its declared definition, then the table."""
    lines = [f"{c.header}: {info_of(c.metric).definition}" for c in table.columns if c.metric]
    return [para(intro), *([bullets(*lines)] if lines else []), table]


def _provenance(rec: ResultRecord) -> dict:
    """What the HTML page shows for a number: the run that made it."""
    return {"suite": rec.suite, "seed": rec.seed, "status": rec.status, "spec": rec.spec, "versions": rec.versions,
            "env": rec.env, "date": dt.datetime.fromtimestamp(rec.created_at, dt.timezone.utc).isoformat(timespec="seconds"),
            "cost": rec.cost}


def markdown_page(board: Board, page: Page, figures_dir: Path | None) -> str:
    return "\n".join([board.header(page.title), *(render_markdown(s, figures_dir) for s in page.sections), ""])


def write_leaderboard(suite: Suite, out: str | Path, store: ResultStore | None = None,
                      plan: Plan | None = None, pages: set[str] | None = None,
                      focus: str | None = None, formats: Iterable[str] = ("markdown",)) -> list[Path]:
    """Write the leaderboard under ``out`` in ``formats`` (see :data:`FORMATS`); returns the paths. Markdown:
    README.md, defenses.md, detectors.md, probes.md, runs.md and the pages plugins contribute (``adaptive.md``,
    ...). Everything comes from the results store and the cache (galleries included): no data set is opened.
    ``plan``: the run's, when one exists already.

    ``pages`` writes only those pages (names without ``.md``), with the suite's cell keys in
    ``runs-<suite>.md`` beside them — how a second suite adds a page to a folder another suite wrote (the
    adaptive suite's page in ``leaderboards/default``). ``focus``: the plugin a report is about alone."""
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise BenchError(f"unknown leaderboard format(s) {unknown}; allowed: {', '.join(FORMATS)}")
    board = Board(suite, store, plan, focus=focus)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    galleries = {}
    if pages is None:
        from bench_core.cache import Cache
        from bench_core.gallery import write_galleries

        galleries = write_galleries(board.plan, Cache(), out / "figures")
    else:
        board.runs_file = f"runs-{filename(suite.name)}.md"
    report = build_report(board, galleries)
    if pages is not None:
        known = {p.name for p in report.pages}
        unknown_pages = pages - known
        if unknown_pages:
            raise BenchError(f"suite {suite.name!r} has no page(s) {sorted(unknown_pages)}; its pages: "
                             f"{', '.join(sorted(known))}")
        report.pages = [p for p in report.pages if p.name in pages or p.name == "runs"]
    paths: list[Path] = []
    if "markdown" in formats:
        for page in report.pages:
            name = board.runs_file if page.name == "runs" else f"{page.name}.md"
            paths.append(out / name)
            paths[-1].write_text(markdown_page(board, page, out / "figures"))
    if "html" in formats:
        from bench_core.render_html import write_html

        paths.append(write_html(report, out / ("index.html" if pages is None else f"{'-'.join(sorted(pages))}.html"),
                                out / "figures"))
    if "latex" in formats:
        from bench_core.render_latex import write_latex

        paths += write_latex(report, out / "latex",
                             main="tables.tex" if pages is None else f"tables-{'-'.join(sorted(pages))}.tex")
    if "csv" in formats or "json" in formats:
        from bench_core.render_data import write_csv, write_json

        if "csv" in formats:
            paths.append(write_csv(report, out / "numbers.csv"))
        if "json" in formats:
            paths.append(write_json(report, out / "report.json"))
    return paths
