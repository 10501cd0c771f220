"""The leaderboard as data: sections of tables and figures, rendered separately.

A :class:`Section` belongs to a page (``defenses``, ``probes``, ``adaptive``, ...) and holds blocks: prose
(:class:`Markdown`), tables (:class:`Table`) and figures (:class:`Figure`). A table cell is a :class:`Stat`
(the stored values of one metric over seeds, with the seeds and cell keys they come from: what a reader
traces a number back to), several stats shown together (:class:`Combo`, e.g. "ASR / CACC") or
:class:`Text`. Units, directions and definitions come from :mod:`bench_core.metrics` metadata, never from a
metric's name. Plugins contribute sections through the ``bdbench_report_sections`` hook; the renderers
(:func:`render_markdown`, ...) know no plugin.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from bench_core.metrics import MetricInfo, mean_interval, metric_info

DASH = "—"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stat(_Model):
    """One metric over the stored seeds of one grid cell: values[i] came from cell keys[i] at seeds[i]."""

    type: Literal["stat"] = "stat"
    metric: str
    values: list[float] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list)
    missing: str = DASH  # printed when no value is stored ("—", "error", "not run")

    show_interval: bool = True  # False: the mean alone (cost columns averaged over a detector's cells)

    @property
    def info(self) -> MetricInfo:
        return info_of(self.metric)

    @property
    def mean(self) -> float | None:
        return mean_interval(self.values)[0] if self.values else None

    @property
    def half(self) -> float | None:
        """Half-width of the 95% t-interval; None for one seed (never a fake interval)."""
        return mean_interval(self.values)[1] if self.values else None


class Text(_Model):
    type: Literal["text"] = "text"
    text: str
    keys: list[str] = Field(default_factory=list)


class Combo(_Model):
    """Stats shown in one cell, joined by ``sep`` ("ASR / CACC")."""

    type: Literal["combo"] = "combo"
    parts: list[Stat]
    sep: str = " / "
    template: str | None = None  # e.g. "{0} ({1})": AUROC (TPR); None joins with sep


Cell = Annotated[Union[Stat, Text, Combo], Field(discriminator="type")]


class Column(_Model):
    header: str
    metric: str | None = None  # the column's metric, for its unit and direction (None: a label column)
    digits: int | None = None  # decimals shown (default: by the metric's unit)


class Row(_Model):
    cells: list[Cell]
    oracle: bool = False  # a row whose plugin knows what a real defender would not
    tags: dict[str, str] = Field(default_factory=dict)  # what the row is about (attack, defense, detector...)


class Table(_Model):
    type: Literal["table"] = "table"
    name: str  # a file-name-safe identifier (CSV / LaTeX file names)
    columns: list[Column]
    rows: list[Row]
    caption: str = ""


class Figure(_Model):
    type: Literal["figure"] = "figure"
    name: str
    spec: dict[str, Any]  # a plot spec (see bench_core.interfaces.ProbeResult)
    caption: str = ""


class Markdown(_Model):
    type: Literal["markdown"] = "markdown"
    text: str


Block = Annotated[Union[Markdown, Table, Figure], Field(discriminator="type")]


class Section(_Model):
    """A titled part of a page (no heading when ``title`` is empty); ``order`` sorts the sections of a page
    (core sections use 0-9 and 100+, plugins' 10-99)."""

    page: str
    title: str
    order: int = 50
    blocks: list[Block]


class Page(_Model):
    name: str  # file stem: defenses -> defenses.md / the HTML tab "defenses"
    title: str
    sections: list[Section]


class Report(_Model):
    """A suite's leaderboard as data: its pages, what every page's header states, and the provenance of every
    stored cell a number comes from (by cell key)."""

    suite: str
    description: str
    config_hash: str
    model: str
    seeds: list[int]
    versions: dict[str, str]
    scope: str  # grid entries that run against some attacks only ('' for a full grid)
    threads: str = ""  # the torch thread counts the stored cells were computed with
    hardware: str = ""  # the machines (CPU and its vector extensions, or GPU) the stored cells were computed on
    generated: str  # ISO date
    stored: int
    total: int
    pages: list[Page]
    provenance: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def tables(self) -> list[tuple[Page, Section, "Table"]]:
        return [(p, s, b) for p in self.pages for s in p.sections for b in s.blocks if isinstance(b, Table)]


def info_of(metric: str) -> MetricInfo:
    """The metric's declared metadata; an undeclared one is shown as a plain value (no unit, no direction) —
    ``tests/test_report.py`` checks that every metric the built-in plugins store is declared."""
    from bench_core.metrics import UnknownMetric

    try:
        return metric_info(metric)
    except UnknownMetric:
        return MetricInfo(name=metric, unit="value", direction="none", definition="(not declared)")


# --- markdown ------------------------------------------------------------------------------------------------

def format_stat(stat: Stat, digits: int | None = None) -> str:
    """'93.1 ± 2.0' over seeds, '93.1' for one seed, ``stat.missing`` for none; percent metrics x100."""
    if not stat.values:
        return stat.missing
    info = stat.info
    mean, half = mean_interval(stat.values)
    if math.isnan(mean):
        return "n/a"
    scale = 100.0 if info.percent else 1.0
    if digits is None:
        digits = default_digits(info)
    text = f"{mean * scale:.{digits}f}"
    return text if half is None or not stat.show_interval else f"{text} ± {half * scale:.{digits}f}"


def default_digits(info: MetricInfo) -> int:
    return {"percent": 1, "dB": 1, "count": 0, "ms": 2, "s": 1, "nats": 3}.get(info.unit, 3)


def format_cell(cell: Stat | Text | Combo, digits: int | None = None) -> str:
    if isinstance(cell, Text):
        return cell.text
    if isinstance(cell, Stat):
        return format_stat(cell, digits)
    parts = [format_stat(p, digits) for p in cell.parts]
    if all(not p.values for p in cell.parts) and len({p.missing for p in cell.parts}) == 1:
        return cell.parts[0].missing
    return cell.template.format(*parts) if cell.template else cell.sep.join(parts)


def column_header(column: Column) -> str:
    """The header with its metric's unit and direction arrow when it has one (``ASR % ↓``)."""
    if column.metric is None:
        return column.header
    info = info_of(column.metric)
    suffix = " %" if info.percent else {"dB": " dB", "ms": " ms", "s": " s"}.get(info.unit, "")
    if suffix.strip() and suffix.strip() in column.header.split():
        suffix = ""  # the header names its unit already ("ms / image")
    arrow = f" {info.arrow}" if info.arrow else ""
    return f"{column.header}{suffix}{arrow}"


def markdown_table(table: Table) -> str:
    from tabulate import tabulate

    rows = [[format_cell(c, table.columns[i].digits) + (" **(oracle)**" if i == 0 and row.oracle else "")
             for i, c in enumerate(row.cells)] for row in table.rows]
    return tabulate(rows, headers=[column_header(c) for c in table.columns], tablefmt="github",
                    disable_numparse=True)


def filename(text: str) -> str:
    """A label as a file-name part: anything but letters, digits, '_', '.' and '-' becomes '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def render_markdown(section: Section, figures_dir: Path | None = None, heading: str = "##") -> str:
    """The section as markdown; figures are drawn as PNGs into ``figures_dir`` (linked as ``figures/...``)."""
    from bench_core.figures import render

    parts = [f"{heading} {section.title}\n"] if section.title else []
    for block in section.blocks:
        if isinstance(block, Markdown):
            parts.append(block.text.rstrip() + "\n")
        elif isinstance(block, Table):
            if block.caption:
                parts.append(block.caption.rstrip() + "\n")
            parts.append(markdown_table(block) + "\n")
        elif figures_dir is not None:
            file = filename(block.name) + ".png"
            render(block.spec, figures_dir / file)
            parts.append(f"![{block.caption or block.name}](figures/{file})\n")
    return "\n".join(parts)
