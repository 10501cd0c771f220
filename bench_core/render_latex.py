"""The leaderboard's tables as LaTeX (booktabs) that compile as they are.

One ``<page>_<table>.tex`` per table of the defenses, detectors and plugin pages (``adaptive``), each a
``table`` float, plus ``tables.tex``, a standalone document (``\\documentclass{article}`` with booktabs) that
inputs them all. Cells: mean ± 95% interval (the value alone for one seed). In each column the best mean of
every metric that has a better direction is set in bold (for "ASR / CACC" cells, ASR and CACC separately);
oracle rows are marked with a dagger.
"""

from __future__ import annotations

from pathlib import Path

from bench_core.report import Combo, Report, Stat, Table, Text, column_header, format_stat

PAGES = ("defenses", "detectors")
"""Core pages whose tables are exported; every page a plugin contributes is exported too."""
CORE = ("README", "defenses", "detectors", "probes", "runs")
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "→": r"$\rightarrow$",
            "↑": r"$\uparrow$", "↓": r"$\downarrow$", "Δ": r"$\Delta$", "—": "---", "−": "$-$", "⁻": r"\textsuperscript{-}",
            "¹": r"\textsuperscript{1}", "…": r"\ldots{}", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$"}


def escape(text: str) -> str:
    """Plain text as LaTeX: special characters escaped, the few symbols tables use as math; other non-ASCII
    characters are dropped (pdflatex's default fonts lack them). Nothing in ``text`` is read as markup."""
    return "".join(_SPECIAL.get(c, c if ord(c) < 128 else "") for c in str(text))


def escape_spans(spans) -> str:
    """A rich text cell's spans: bold ones in \\textbf, everything escaped."""
    return "".join(rf"\textbf{{{escape(s.text)}}}" if s.style == "strong" else escape(s.text) for s in spans)


def write_latex(report: Report, out: Path, main: str = "tables.tex") -> list[Path]:
    """Write one ``.tex`` per exported table and ``main``, the document that inputs them; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths, names = [], []
    for page in report.pages:
        if page.name not in PAGES and page.name in CORE:
            continue
        for section in page.sections:
            for block in section.blocks:
                if isinstance(block, Table) and block.rows:
                    name = f"{page.name}_{block.name}"
                    caption = f"{page.title}" + (f": {section.title}" if section.title else "")
                    path = out / f"{name}.tex"
                    path.write_text(latex_table(block, caption, f"tab:{name}", report))
                    paths.append(path)
                    names.append(name)
    main = out / main
    main.write_text("\n".join([
        r"\documentclass{article}", r"\usepackage[T1]{fontenc}", r"\usepackage{booktabs}", r"\usepackage{graphicx}",
        r"\usepackage[margin=1cm,landscape]{geometry}", r"\begin{document}",
        *(rf"\input{{{n}}}" + "\n" + r"\clearpage" for n in names), r"\end{document}", ""]))
    return [*paths, main]


def _best(table: Table) -> set[tuple[int, int, int]]:
    """(row, column, part) of the best mean per column and part, for metrics with a better direction."""
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for r, row in enumerate(table.rows):
        for c, cell in enumerate(row.cells):
            parts = [cell] if isinstance(cell, Stat) else list(cell.parts) if isinstance(cell, Combo) else []
            for p, stat in enumerate(parts):
                if not stat.values or stat.info.direction == "none":
                    continue
                score = stat.mean if stat.info.direction == "higher" else -stat.mean
                if (c, p) not in best or score > best[(c, p)][0]:
                    best[(c, p)] = (score, r)
    return {(r, c, p) for (c, p), (_, r) in best.items()}


def _cell(cell, digits: int | None, bold: set[int]) -> str:
    if isinstance(cell, Text):
        return escape_spans(cell.spans) if cell.spans else escape(cell.text)
    parts = [cell] if isinstance(cell, Stat) else list(cell.parts)
    texts = []
    for p, stat in enumerate(parts):
        text = escape(format_stat(stat, digits))
        texts.append(rf"\textbf{{{text}}}" if p in bold and stat.values else text)
    if isinstance(cell, Combo) and all(not s.values for s in parts):
        return escape(parts[0].missing)
    if isinstance(cell, Combo) and cell.template:
        return escape(cell.template).replace(r"\{0\}", texts[0]).replace(r"\{1\}", texts[1] if len(texts) > 1 else "")
    return " / ".join(texts)


def latex_table(table: Table, caption: str, label: str, report: Report) -> str:
    best = _best(table)
    header = " & ".join(escape(column_header(c)) for c in table.columns) + r" \\"
    lines = []
    for r, row in enumerate(table.rows):
        cells = [_cell(cell, table.columns[c].digits if c < len(table.columns) else None,
                       {p for (rr, cc, p) in best if rr == r and cc == c}) for c, cell in enumerate(row.cells)]
        if row.oracle and cells:
            cells[0] += r"$^\dagger$"
        lines.append(" & ".join(cells) + r" \\")
    seeds = len(report.seeds)
    spread = r"s: mean $\pm$ 95\% interval" if seeds > 1 else ""
    oracle = r"; $^\dagger$ oracle (knows what a real defender would not)" if any(r.oracle for r in table.rows) else ""
    note = (f"Suite {escape(report.suite)} (config {escape(report.config_hash)}), {seeds} seed{spread}; "
            f"best per column in bold{oracle}.")
    return "\n".join([
        r"\begin{table}[ht]", r"\centering", r"\small", r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{" + "l" * len(table.columns) + "}", r"\toprule", header, r"\midrule", *lines,
        r"\bottomrule", r"\end{tabular}}", rf"\caption{{{escape(caption)}. {note}}}", rf"\label{{{label}}}",
        r"\end{table}", ""])
