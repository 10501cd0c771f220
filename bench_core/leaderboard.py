"""Leaderboard markdown, built from stored results only.

The suite is expanded into its plan (:func:`bench_core.plan.expand`, the very cells a run computes), and each
cell's row is read from the store by key, so every number traces to one stored run (``runs.md`` lists the
keys). Missing cells print "—"; failed cells print "error"; cells the suite's grid leaves out (an entry scoped to some attacks) print
"not run". Several seeds -> mean ± 95% t-interval; one seed -> the value alone.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Iterable

from tabulate import tabulate

from bench_core import __version__ as CORE_VERSION
from bench_core.data import world
from bench_core.metrics import mean_interval
from bench_core.errors import BenchError
from bench_core.keys import NO_ATTACK
from bench_core.plan import Cell, Plan, PluginSpec, expand
from bench_core.report import Section, Stat, render_markdown
from bench_core.store import ResultRecord, ResultStore
from bench_core.suite import Suite

CORE_PAGES = frozenset({"defenses", "detectors", "probes", "runs", "README"})
"""Pages the core writes; a plugin section naming another page gets a page of its own (``adaptive.md``)."""
DASH = "—"
NOT_RUN = "not run"
"""Printed where the suite's grid has no cell (an entry with ``attacks:`` that leaves this attack out)."""
RATE_TAGS = ("cacc", "asr", "acc", "auroc", "tpr", "fraction", "below_eps", "ra_", "recall")
"""Probe-table columns whose name contains one of these are rates, printed in percent."""


def fmt(values: Iterable[float], percent: bool = True, digits: int = 1) -> str:
    """'93.1 ± 2.0' over seeds, '93.1' for one seed, '—' for none."""
    values = list(values)
    if not values:
        return DASH
    mean, half = mean_interval(values)
    scale = 100.0 if percent else 1.0
    if mean != mean:  # NaN
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    return text if half is None else f"{text} ± {half * scale:.{digits}f}"


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
        return (f"# {title}\n\n"
                f"- suite: `{self.suite.name}` — {self.suite.description.strip()}\n"
                f"- config hash: `{self.suite.config_hash()}`; model: {self.suite.model.label}; "
                f"seeds: {', '.join(map(str, self.suite.seeds))}\n"
                f"- versions: {vtext}\n"
                f"{self.scope_note()}"
                f"- generated: {dt.date.today().isoformat()} from the results store "
                f"({sum(r.status == 'ok' for r in self.records.values())} of {len(self.cells)} cells stored; "
                f"cell keys in [{self.runs_file}]({self.runs_file}))\n\n"
                f"_Generated by `bdbench leaderboard`; do not edit by hand._\n")

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

    def metric(self, cells: list[Cell], name: str, percent: bool = True) -> str:
        if not cells:
            return NOT_RUN
        recs = self.ok(cells)
        if not recs:
            return "error" if self.errors(cells) else DASH
        return fmt([r.metrics[name] for r in recs if name in r.metrics], percent)


ASR_TARGET, CACC_TOLERANCE = 0.90, 0.03
"""What a working attack must reach with no defense: ASR >= 90% with CACC within 3 points of the clean model."""


def attack_targets(board: Board) -> str:
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
        rows.append([name, f"{100 * a:.1f}", f"{100 * c:.1f}", "meets" if ok else "short: " + "; ".join(why)])
    return tabulate(rows, headers=["attack", "ASR % (mean)", "CACC % (mean)", "target"], tablefmt="github",
                    disable_numparse=True) if rows else ""


def pipeline_label(board: Board, pipeline: tuple) -> str:
    if not pipeline:
        return "no defense"
    oracle = any(d.oracle for d in pipeline)
    return " → ".join(d.label for d in pipeline) + (" **(oracle)**" if oracle else "")


def defenses_table(board: Board) -> str:
    headers = ["defense pipeline", *(f"{a} ASR / CACC" if a != NO_ATTACK else "clean CACC" for a in board.attacks)]
    rows = []
    for pipeline in board.pipelines:
        names = tuple(d.label for d in pipeline)
        row = [pipeline_label(board, pipeline)]
        for attack in board.attacks:
            cells = board.select(kind="eval", attack=attack, pipeline=names)
            if attack == NO_ATTACK or not cells:
                row.append(board.metric(cells, "cacc"))
            else:
                row.append(f"{board.metric(cells, 'asr')} / {board.metric(cells, 'cacc')}")
        rows.append(row)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def secondary_table(board: Board, metrics: list[tuple[str, str, bool]]) -> str:
    """Rows: (pipeline, attack); columns: the given (key, header, percent) metrics."""
    rows = []
    for pipeline in board.pipelines:
        names = tuple(d.label for d in pipeline)
        for attack in board.attacks:
            cells = board.select(kind="eval", attack=attack, pipeline=names)
            if not cells:
                continue  # not in the suite's grid
            row = [pipeline_label(board, pipeline), attack]
            for key, _, percent in metrics:
                row.append(board.metric(cells, key, percent) if attack != NO_ATTACK or key in ("cacc", "ece", "nll",
                                                                                                 "ms_per_image") else DASH)
            rows.append(row)
    return tabulate(rows, headers=["defense pipeline", "attack", *(h for _, h, _ in metrics)], tablefmt="github", disable_numparse=True)


def attacks_table(board: Board) -> str:
    """Per attack: locality, target, and every ``attack_*`` number the runner stored (PSNR, poison count, the
    attack's own stats such as ISSBA's bit accuracy), from the no-defense cells, over seeds."""
    rows, keys = [], []
    for name, attack in board.attack_specs.items():
        recs = board.ok(board.select(kind="eval", attack=name, pipeline=()))
        for rec in recs:
            keys += [k for k in rec.metrics if k.startswith("attack_") and k not in keys]
        rows.append((name, attack, recs))
    table = []
    for name, attack, recs in rows:
        row = [name, attack.locality, world.CLASSES[attack.target_class]
               if board.suite.data.kind == "world" else attack.target_class]
        for key in keys:
            values = [r.metrics[key] for r in recs if key in r.metrics]
            rate = key.endswith(("fraction", "accuracy"))
            row.append(fmt(values, percent=rate, digits=1 if rate else 2))
        table.append(row)
    headers = ["attack", "type", "target", *(k.removeprefix("attack_") + (" %" if k.endswith(("fraction", "accuracy"))
                                                                           else "") for k in keys)]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def threat_table(board: Board) -> str:
    rows, seen = [], set()
    for pipeline in board.pipelines:
        for d in pipeline:
            if d.label not in seen:
                seen.add(d.label)
                rows.append([d.label, d.stage, d.version, d.threat_model])
    for d in board.detectors:
        rows.append([d.label, "detector", d.version, d.threat_model])
    return tabulate(rows, headers=["plugin", "stage", "version", "threat model"], tablefmt="github", disable_numparse=True) if rows else ""


def detectors_table(board: Board) -> str:
    attacks = [a for a in board.attacks if a != NO_ATTACK]
    headers = ["detector", *(f"{a} AUROC (TPR@5%FPR)" for a in attacks), "fwd passes / image", "ms / image"]
    rows = []
    for name in (d.label for d in board.detectors):
        row = [name]
        costs, ms = [], []
        for attack in attacks:
            cells = board.select(kind="detector", attack=attack, detector=name)
            row.append(f"{board.metric(cells, 'auroc')} ({board.metric(cells, 'tpr_at_5fpr')})"
                       if cells else NOT_RUN)
            for rec in board.ok(cells):
                costs.append(rec.cost.get("forward_passes_per_image", float("nan")))
                ms.append(rec.cost.get("ms_per_image", float("nan")))
        row += [f"{sum(costs) / len(costs):.0f}" if costs else DASH, f"{sum(ms) / len(ms):.2f}" if ms else DASH]
        rows.append(row)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def probe_tables(board: Board, figures_dir: Path | None = None) -> str:
    """Per probe and attack: its tables averaged over seeds, and its figures (first seed) as linked PNGs."""
    from bench_core.figures import render

    parts = []
    for probe, pipeline in board.probes:
        name = probe.label
        names = tuple(d.label for d in pipeline)
        parts.append(f"## {name}" + (f" on {' → '.join(names)}" if names else "") + "\n")
        for attack in (a for a in board.attacks if a != NO_ATTACK):
            cells = board.select(kind="probe", attack=attack, probe=name, pipeline=names)
            if not cells:
                continue  # the suite runs this probe against other attacks only
            recs = board.ok(cells)
            if not recs:
                parts.append(f"### {attack}\n\n{DASH} (not stored)\n")
                continue
            locality = recs[0].payload.get("locality", "?")
            for table_name, first_rows in recs[0].payload.get("tables", {}).items():
                parts.append(f"### {attack} ({locality}) — {table_name}\n")
                parts.append(_merge_table_over_seeds([r.payload["tables"][table_name] for r in recs]))
                parts.append("")
            for fig_name, spec in recs[0].payload.get("figures", {}).items():
                if figures_dir is None:
                    continue
                suffix = "_".join(names).replace(".", "-")
                file = _filename(f"{name}_{attack}_{fig_name}{'_' + suffix if suffix else ''}") + ".png"
                render(spec, figures_dir / file)
                parts.append(f"![{name} {attack} {fig_name}](figures/{file})\n")
    return "\n".join(parts)


def _merge_table_over_seeds(tables: list[list[dict]]) -> str:
    """Average numeric columns of identically shaped probe tables over seeds (percent for rates)."""
    first = tables[0]
    rows = []
    for i, row in enumerate(first):
        out = {}
        for key, value in row.items():
            rate = any(tag in key for tag in RATE_TAGS)
            if isinstance(value, int) and not isinstance(value, bool) and not rate and all(
                    i < len(t) and t[i].get(key) == value for t in tables):
                out[key] = str(value)  # an index (layer, head), the same in every seed: not averaged
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key + (" %" if rate else "")] = fmt([t[i][key] for t in tables if i < len(t)], percent=rate,
                                                          digits=1 if rate else 3)
            else:
                out[key] = value
        rows.append(out)
    return tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)


def _filename(text: str) -> str:
    """A label as a file-name part: anything but letters, digits, '_', '.' and '-' becomes '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def runs_table(board: Board) -> str:
    rows = []
    for c in board.cells:
        rec = board.records.get(c.key)
        what = c.detector or c.probe or (" → ".join(c.pipeline) or "no defense")
        rows.append([c.key[:12], c.kind, c.attack, what, c.seed, rec.status if rec else "missing",
                     f"{rec.cost.get('seconds', 0):.1f}" if rec else DASH])
    return tabulate(rows, headers=["cell key", "kind", "attack", "defense / detector / probe", "seed", "status",
                                   "seconds"], tablefmt="github", disable_numparse=True)


def write_leaderboard(suite: Suite, out: str | Path, store: ResultStore | None = None,
                      plan: Plan | None = None, pages: set[str] | None = None,
                      focus: str | None = None) -> list[Path]:
    """Write README.md, defenses.md, detectors.md, probes.md, runs.md and the pages plugins contribute
    (``adaptive.md``, ...) under ``out``; returns the paths. Everything comes from the results store and the
    cache (galleries included): no data set is opened. ``plan``: the run's, when one exists already.

    ``pages`` writes only those pages (names without ``.md``), with the suite's cell keys in
    ``runs-<suite>.md`` beside them — how a second suite adds a page to a folder another suite wrote (the
    adaptive suite's page in ``leaderboards/default``). ``focus``: the plugin a report is about alone."""
    board = Board(suite, store, plan, focus=focus)
    if pages is not None:
        return _write_pages(board, Path(out), pages)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    clean_cacc = board.metric(board.select(kind="eval", attack=NO_ATTACK, pipeline=()), "cacc")
    files["defenses.md"] = "\n".join([
        board.header(f"Defenses — {suite.name}"),
        "Cells: attack success rate (non-target triggered test images classified as the target) / clean "
        "zero-shot accuracy, in percent. Shaped like the paper's Table 1.\n",
        defenses_table(board), "",
        "## Attack targets\n",
        f"No defense, mean over seeds; target: ASR >= {100 * ASR_TARGET:.0f}% with CACC within "
        f"{100 * CACC_TOLERANCE:.0f} points of the clean fine-tuned model ({clean_cacc}%).\n",
        attack_targets(board), "",
        "## Attacks\n",
        "PSNR of triggered vs clean test images (dB); poisoned pairs of the fine-tune set; the attack's own "
        "statistics (ISSBA: decoder bit accuracy and stego PSNR on held images; Label-Consistent: poisoned share "
        "of the target class, image–caption similarity before / after PGD; BadCLIP: optimisation loss).\n",
        attacks_table(board), "",
        "## Threat models\n", threat_table(board), "",
        "## All metrics\n",
        "ASR (all images) is the paper's variant that also counts target-class images; RA = triggered "
        "non-target images classified as their true class; ECE and NLL on clean test images.\n",
        secondary_table(board, [("cacc", "CACC %", True), ("asr", "ASR %", True),
                                ("asr_all_images", "ASR all images %", True), ("ra", "RA %", True),
                                ("ece", "ECE %", True), ("nll", "NLL", False)]), ""])
    files["detectors.md"] = "\n".join([
        board.header(f"Detectors — {suite.name}"),
        "AUROC (TPR at 5% FPR) in percent, from continuous scores: clean test images vs triggered non-target "
        "test images. Cost: model forward passes and milliseconds per scored image. Shaped like the paper's "
        "Table 2.\n", detectors_table(board), ""])
    sections = board.sections()
    contributed = {sec.page for sec in sections}

    def page_sections(page: str) -> list[str]:
        return [render_markdown(sec, out / "figures") for sec in sections if sec.page == page]

    files["probes.md"] = "\n".join([board.header(f"Probes — {suite.name}"), *page_sections("probes"),
                                     probe_tables(board, out / "figures"), ""])
    own_pages = sorted(contributed - CORE_PAGES)
    for page in own_pages:
        files[f"{page}.md"] = "\n".join([board.header(f"{page.capitalize()} — {suite.name}"),
                                         *page_sections(page), ""])
    files["runs.md"] = "\n".join([board.header(f"Stored runs — {suite.name}"), runs_table(board), ""])
    from bench_core.gallery import write_galleries

    from bench_core.cache import Cache

    galleries = write_galleries(board.plan, Cache(), out / "figures")
    clean = board.ok(board.select(kind="eval", attack=NO_ATTACK, pipeline=()))
    pretrained = fmt([r.metrics["cacc_pretrained"] for r in clean if "cacc_pretrained" in r.metrics])
    files["README.md"] = "\n".join([
        board.header(f"bdbench leaderboard — {suite.name}"),
        f"Clean pretrained model: zero-shot CACC {pretrained}%; after the clean fine-tune: "
        f"{clean_cacc}%.\n",
        "- [Defenses](defenses.md) (paper Table 1)",
        "- [Detectors](detectors.md) (paper Table 2)",
        "- [Probes](probes.md) (paper Fig. 1–5 and 8; plugins' checks such as the paper's Findings)",
        *(f"- [{page.capitalize()}]({page}.md) (contributed by a plugin package)" for page in own_pages),
        "- [Stored runs](runs.md)", "",
        "## Trigger galleries\n",
        *(f"![{name}](figures/{path.name})\n" for name, path in galleries.items()), ""])
    paths = []
    for name, text in files.items():
        path = out / name
        path.write_text(text)
        paths.append(path)
    return paths


def _write_pages(board: Board, out: Path, pages: set[str]) -> list[Path]:
    """Only ``pages`` (plugin-contributed or core section pages), plus ``runs-<suite>.md``."""
    board.runs_file = f"runs-{_filename(board.suite.name)}.md"
    sections = board.sections()
    unknown = pages - {sec.page for sec in sections}
    if unknown:
        raise BenchError(f"no section of suite {board.suite.name!r} is on page(s) {sorted(unknown)}; its pages "
                         f"with plugin sections: {sorted({sec.page for sec in sections}) or 'none'}")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for page in sorted(pages):
        text = "\n".join([board.header(f"{page.capitalize()} — {board.suite.name}"),
                          *(render_markdown(sec, out / "figures") for sec in sections if sec.page == page), ""])
        paths.append(out / f"{page}.md")
        paths[-1].write_text(text)
    paths.append(out / board.runs_file)
    paths[-1].write_text("\n".join([board.header(f"Stored runs — {board.suite.name}"), runs_table(board), ""]))
    return paths
