"""The leaderboard as data: sections of tables and figures, rendered separately.

A :class:`Section` belongs to a page (``defenses``, ``probes``, ``adaptive``, ...) and holds blocks: prose
(:class:`Prose`: paragraphs, headings and lists of text spans, never markup), tables (:class:`Table`), figures
(:class:`Figure`) and gallery images (:class:`Image`, files in the board's own figures folder). A table cell is a :class:`Stat`
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
    """A text cell. ``spans``, when set, is how it is shown (e.g. a bold verdict word); ``text`` is its plain
    form (CSV, sorting). Built by :func:`rich`; a plain string is never parsed for markup."""

    type: Literal["text"] = "text"
    text: str
    keys: list[str] = Field(default_factory=list)
    spans: list["Span"] | None = None


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


class Span(_Model):
    """A run of prose text: plain, bold or code, or a link to another page of the same board (its file stem).
    Its text is data — escaped by every renderer, never parsed for markup — and there are no external links."""

    text: str
    style: Literal["plain", "strong", "code"] = "plain"
    page: str | None = None


class Prose(_Model):
    """Prose as structure: a paragraph or a heading (``spans``) or a bullet list (``items``, each a list of spans).
    Nothing in it is markup: a label such as ``![x](/etc/passwd)`` or ``<script>`` prints as those characters."""

    type: Literal["prose"] = "prose"
    kind: Literal["paragraph", "heading", "bullets"] = "paragraph"
    spans: list[Span] = Field(default_factory=list)
    items: list[list[Span]] = Field(default_factory=list)
    level: int = Field(3, ge=2, le=6)  # headings: the markdown level (## = 2)


class Image(_Model):
    """A PNG the leaderboard wrote into the board's own ``figures/`` folder (a trigger gallery), by file name.
    Renderers embed or link it only when the name is a plain file name that resolves inside that folder."""

    type: Literal["image"] = "image"
    file: str
    alt: str = ""


Block = Annotated[Union[Prose, Table, Figure, Image], Field(discriminator="type")]


def rich(*parts: "str | Span", keys: list[str] | None = None) -> Text:
    """A text cell from plain strings and spans (``rich(strong("breaks"), ": ASR +64.0 points")``)."""
    spans = _spans(parts)
    return Text(text="".join(s.text for s in spans), spans=spans, keys=keys or [])


def _spans(parts) -> list[Span]:
    return [p if isinstance(p, Span) else Span(text=str(p)) for p in parts]


def para(*parts: "str | Span") -> Prose:
    """A paragraph; strings are plain text."""
    return Prose(kind="paragraph", spans=_spans(parts))


def heading(level: int, *parts: "str | Span") -> Prose:
    return Prose(kind="heading", level=level, spans=_spans(parts))


def bullets(*items: "str | Span | list") -> Prose:
    """A bullet list; each item is a string, a span or a list of them."""
    return Prose(kind="bullets", items=[_spans(i if isinstance(i, (list, tuple)) else [i]) for i in items])


def strong(text: str) -> Span:
    return Span(text=text, style="strong")


def code(text: str) -> Span:
    return Span(text=text, style="code")


def link(text: str, page: str) -> Span:
    """A link to another page of the board (``defenses``, ``runs``...)."""
    return Span(text=text, page=page)


def figure_file(figures_dir: Path, name: str) -> Path | None:
    """``figures_dir / name`` when ``name`` is a plain file name that resolves inside ``figures_dir`` and exists;
    else None (a renderer then prints the alt text, never reads the file)."""
    if not name or name != filename(name) or name.startswith("."):
        return None
    folder = figures_dir.resolve()
    path = (folder / name).resolve()
    return path if path.parent == folder and path.is_file() else None


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


def md_escape(text: str) -> str:
    """Plain text as markdown that renders as those characters: no link, image, HTML tag, emphasis, code span or
    table cell boundary can come out of it (CommonMark backslash escapes; newlines become spaces)."""
    text = re.sub(r"[\\`*\[\]<>|!]", lambda m: "\\" + m.group(0), " ".join(str(text).splitlines()))
    text = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)
    # a line start that would open a heading, a list item or a fence
    return re.sub(r"^(\s*)(#|[+\-](?=\s)|\d+(?=[.)](?:\s|$))|~~~|===|---)",
                  lambda m: m.group(1) + "\\" + m.group(2), text)


def md_spans(spans: list[Span]) -> str:
    out = []
    for span in spans:
        text = md_escape(span.text)
        if span.style == "code":
            text = f"<code>{html_escape(span.text)}</code>"
        elif span.style == "strong":
            text = f"**{text}**"
        if span.page is not None:
            text = f"[{text}]({filename(span.page)}.md)"
        out.append(text)
    return "".join(out)


def html_escape(text: str) -> str:
    import html

    return html.escape(str(text), quote=True)


def markdown_prose(block: Prose) -> str:
    if block.kind == "heading":
        return "#" * block.level + " " + md_spans(block.spans)
    if block.kind == "bullets":
        return "\n".join("- " + md_spans(item) for item in block.items)
    return md_spans(block.spans)


def markdown_table(table: Table) -> str:
    from tabulate import tabulate

    rows = [[(md_spans(c.spans) if isinstance(c, Text) and c.spans else md_escape(format_cell(c, table.columns[i].digits)))
             + (" **(oracle)**" if i == 0 and row.oracle else "")
             for i, c in enumerate(row.cells)] for row in table.rows]
    return tabulate(rows, headers=[md_escape(column_header(c)) for c in table.columns], tablefmt="github",
                    disable_numparse=True)


def filename(text: str) -> str:
    """A label as a file-name part: anything but letters, digits, '_', '.' and '-' becomes '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def render_markdown(section: Section, figures_dir: Path | None = None, heading: str = "##") -> str:
    """The section as markdown; figures are drawn as PNGs into ``figures_dir`` (linked as ``figures/...``)."""
    from bench_core.figures import render

    parts = [f"{heading} {md_escape(section.title)}\n"] if section.title else []
    for block in section.blocks:
        if isinstance(block, Prose):
            parts.append(markdown_prose(block) + "\n")
        elif isinstance(block, Table):
            if block.caption:
                parts.append(md_escape(block.caption.strip()) + "\n")
            parts.append(markdown_table(block) + "\n")
        elif isinstance(block, Image):
            if figures_dir is not None and figure_file(figures_dir, block.file) is not None:
                parts.append(f"![{md_escape(block.alt)}](figures/{block.file})\n")
            else:
                parts.append(md_escape(block.alt) + "\n")
        elif figures_dir is not None:
            file = filename(block.name) + ".png"
            render(block.spec, figures_dir / file)
            parts.append(f"![{md_escape(block.caption or block.name)}](figures/{file})\n")
    return "\n".join(parts)


Text.model_rebuild()
