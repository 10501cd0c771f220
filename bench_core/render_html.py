"""The leaderboard as one self-contained HTML page (``index.html``): no network at view time.

Every page of the report becomes a tab; every table is sortable (click a header; numbers sort by their
mean), rows can be filtered by attack, defense / detector and threat model, oracle rows are marked, and a
click on a number shows its provenance: for each seed the cell key, the full plugin specs, the versions, the
environment and the date of the stored run. Figures are embedded as data URIs; the CSS and the script are
inline.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from bench_core.report import (Combo, Figure, Image, Prose, Report, Span, Stat, Table, Text, column_header,
                               figure_file, filename, format_cell, info_of)

FILTERS = (("attack", "attack"), ("defense", "defense / detector"), ("threat_model", "threat model"))


def write_html(report: Report, path: Path, figures_dir: Path) -> Path:
    """Render ``report`` into ``path``; figure specs are drawn into ``figures_dir`` first, then embedded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, figures_dir), encoding="utf-8")
    return path


def render_html(report: Report, figures_dir: Path) -> str:
    tabs, bodies = [], []
    for i, page in enumerate(report.pages):
        tabs.append(f'<button class="tab{" active" if i == 0 else ""}" data-page="{_e(page.name)}">'
                    f'{_e(page.title.split(" — ")[0])}</button>')
        parts = [f'<section class="page{" active" if i == 0 else ""}" id="page-{_e(page.name)}"><h2>{_e(page.title)}</h2>']
        for section in page.sections:
            if section.title:
                parts.append(f"<h3>{_e(section.title)}</h3>")
            for block in section.blocks:
                if isinstance(block, Prose):
                    parts.append(_prose(block))
                elif isinstance(block, Image):
                    parts.append(_image(block, figures_dir))
                elif isinstance(block, Table):
                    parts.append(_table(block))
                elif isinstance(block, Figure):
                    parts.append(_figure(block, figures_dir))
        parts.append("</section>")
        bodies.append("\n".join(parts))
    filters = "".join(f'<label>{_e(label)} <select data-filter="{key}"><option value="">all</option></select></label>'
                      for key, label in FILTERS)
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    provenance = script_safe_json(report.provenance)
    return _PAGE.format(
        title=_e(f"bdbench leaderboard — {report.suite}"), suite=_e(report.suite), description=_e(report.description),
        config_hash=_e(report.config_hash), model=_e(report.model), seeds=_e(", ".join(map(str, report.seeds))),
        versions=_e(versions), scope=f"<li>grid: {_e(report.scope)}</li>" if report.scope else "",
        threads=_e(report.threads), hardware=_e(report.hardware), generated=_e(report.generated), stored=report.stored, total=report.total,
        tabs="".join(tabs),
        filters=filters, body="\n".join(bodies), provenance=provenance, css=_CSS, script=_SCRIPT)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(table: Table) -> str:
    head = "".join(f'<th data-col="{i}" title="{_e(_definition(c.metric))}">{_e(column_header(c))}</th>'
                   for i, c in enumerate(table.columns))
    rows = []
    for row in table.rows:
        attrs = "".join(f' data-{k.replace("_", "-")}="{_e(v)}"' for k, v in row.tags.items())
        cells = []
        for i, cell in enumerate(row.cells):
            digits = table.columns[i].digits if i < len(table.columns) else None
            text = _spans(cell.spans) if isinstance(cell, Text) and cell.spans else _e(format_cell(cell, digits))
            if i == 0 and row.oracle:
                text += ' <span class="badge">oracle</span>'
            cells.append(f"<td{_cell_attrs(cell)}>{text}</td>")
        rows.append(f'<tr class="{"oracle" if row.oracle else ""}"{attrs}>{"".join(cells)}</tr>')
    caption = f"<p>{_e(table.caption.strip())}</p>" if table.caption.strip() else ""
    return (f'{caption}<div class="scroll"><table class="board" id="table-{_e(table.name)}"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div>')


def _definition(metric: str | None) -> str:
    if metric is None:
        return ""
    info = info_of(metric)
    return f"{info.name}: {info.definition} ({info.unit}; {info.direction} is better)" if info.direction != "none" \
        else f"{info.name}: {info.definition} ({info.unit})"


def _cell_attrs(cell) -> str:
    """data-value (the sort key: the first stat's mean) and data-keys (cell keys for the provenance panel)."""
    stats = [cell] if isinstance(cell, Stat) else list(cell.parts) if isinstance(cell, Combo) else []
    keys = [k for s in stats for k in s.keys] + (list(cell.keys) if isinstance(cell, Text) else [])
    out = ""
    if stats and stats[0].values:
        out += f' data-value="{stats[0].mean:.6g}"'
    if keys:
        out += f' data-keys="{_e(",".join(dict.fromkeys(keys)))}" class="traced"'
    return out


def _figure(figure: Figure, figures_dir: Path) -> str:
    from bench_core.figures import render

    file = render(figure.spec, figures_dir / (filename(figure.name) + ".png"))
    return f'<figure>{_img(file, figure.caption)}<figcaption>{_e(figure.caption)}</figcaption></figure>'


def _img(file: Path, alt: str) -> str:
    data = base64.b64encode(file.read_bytes()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _spans(spans: list[Span]) -> str:
    """Prose spans as HTML: text escaped; a link only ever goes to another tab of this page."""
    out = []
    for span in spans:
        text = _e(span.text)
        if span.style == "strong":
            text = f"<strong>{text}</strong>"
        elif span.style == "code":
            text = f"<code>{text}</code>"
        if span.page is not None:
            text = f'<a href="#" data-goto="{_e(span.page)}">{text}</a>'
        out.append(text)
    return "".join(out)


def _prose(block: Prose) -> str:
    if block.kind == "heading":
        level = min(6, block.level + 1)  # the page title is <h2>
        return f"<h{level}>{_spans(block.spans)}</h{level}>"
    if block.kind == "bullets":
        return "<ul>" + "".join(f"<li>{_spans(item)}</li>" for item in block.items) + "</ul>"
    return f"<p>{_spans(block.spans)}</p>"


def _image(block: Image, figures_dir: Path) -> str:
    """A gallery image, embedded only from the board's own figures folder; otherwise its alt text."""
    file = figure_file(figures_dir, block.file)
    return f"<p>{_img(file, block.alt)}</p>" if file is not None else f"<p>{_e(block.alt)}</p>"


def script_safe_json(value) -> str:
    """JSON for a ``<script type="application/json">`` element: no string in it can close the element or open
    or close a comment, since ``<``, ``>`` and ``&`` (and the JavaScript line separators) are written as
    ``\\uXXXX`` escapes, which ``JSON.parse`` reads back as the same characters."""
    text = json.dumps(value, sort_keys=True)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#fafbfc}
header{padding:16px 24px;background:#1d2430;color:#fff}header h1{margin:0 0 6px;font-size:20px}
header ul{margin:0;padding-left:18px;font-size:12.5px;color:#c9d1dc}
nav{display:flex;flex-wrap:wrap;gap:4px;padding:8px 24px;background:#e9edf2;position:sticky;top:0;z-index:2}
.tab{border:1px solid #b8c1cc;background:#fff;border-radius:4px;padding:4px 10px;cursor:pointer}
.tab.active{background:#1d6fd1;color:#fff;border-color:#1d6fd1}
.filters{padding:8px 24px;display:flex;gap:16px;flex-wrap:wrap;font-size:13px}
main{padding:0 24px 40px}.page{display:none}.page.active{display:block}
.scroll{overflow-x:auto}table.board{border-collapse:collapse;margin:8px 0 18px;font-size:12.5px;background:#fff}
table.board th{background:#f0f3f6;cursor:pointer;position:sticky;top:0;text-align:left;white-space:nowrap}
table.board th.sorted-asc::after{content:" ▲"}table.board th.sorted-desc::after{content:" ▼"}
table.board td,table.board th{border:1px solid #d9dee4;padding:3px 7px}
tr.oracle td{background:#fff7e0}.badge{background:#c77700;color:#fff;border-radius:3px;padding:0 4px;font-size:10.5px}
td.traced{cursor:pointer}td.traced:hover{background:#e6f0ff}
#provenance-panel{position:fixed;right:12px;bottom:12px;width:min(640px,92vw);max-height:60vh;overflow:auto;
background:#fff;border:1px solid #8a96a3;border-radius:6px;box-shadow:0 4px 18px rgba(0,0,0,.2);padding:10px 14px;
display:none;z-index:5;font-size:12px}#provenance-panel pre{white-space:pre-wrap;background:#f5f7f9;padding:6px}
figure img,p img{max-width:100%}figure{margin:10px 0}
"""

_SCRIPT = """
(function () {
  "use strict";
  var provenance = JSON.parse(document.getElementById("provenance").textContent);
  function show(name) {
    document.querySelectorAll(".page").forEach(function (p) { p.classList.toggle("active", p.id === "page-" + name); });
    document.querySelectorAll(".tab").forEach(function (t) { t.classList.toggle("active", t.dataset.page === name); });
  }
  document.querySelectorAll(".tab").forEach(function (t) { t.addEventListener("click", function () { show(t.dataset.page); }); });
  document.querySelectorAll("a[data-goto]").forEach(function (a) {
    a.addEventListener("click", function (e) { e.preventDefault(); show(a.dataset.goto); });
  });
  function cellKey(td) {
    var v = td.getAttribute("data-value");
    return v === null ? td.textContent.trim().toLowerCase() : parseFloat(v);
  }
  document.querySelectorAll("table.board th").forEach(function (th) {
    th.addEventListener("click", function () {
      var table = th.closest("table"), col = parseInt(th.dataset.col, 10), body = table.tBodies[0];
      var asc = !th.classList.contains("sorted-asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
      th.classList.add(asc ? "sorted-asc" : "sorted-desc");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = cellKey(a.cells[col]), y = cellKey(b.cells[col]);
        var nx = typeof x === "number", ny = typeof y === "number";
        var r = nx && ny ? x - y : nx ? -1 : ny ? 1 : (x < y ? -1 : x > y ? 1 : 0);
        return asc ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  var selects = document.querySelectorAll("select[data-filter]");
  selects.forEach(function (sel) {
    var key = sel.dataset.filter, attr = "data-" + key.replace(/_/g, "-"), seen = {};
    var extra = key === "defense" ? ["data-detector"] : [];
    document.querySelectorAll("table.board tbody tr").forEach(function (tr) {
      [attr].concat(extra).forEach(function (a) { var v = tr.getAttribute(a); if (v) { seen[v] = true; } });
    });
    Object.keys(seen).sort().forEach(function (v) {
      var o = document.createElement("option"); o.value = v; o.textContent = v.length > 90 ? v.slice(0, 90) + "…" : v;
      sel.appendChild(o);
    });
    sel.addEventListener("change", applyFilters);
  });
  function applyFilters() {
    document.querySelectorAll("table.board tbody tr").forEach(function (tr) {
      var visible = true;
      selects.forEach(function (sel) {
        if (!sel.value) { return; }
        var key = sel.dataset.filter, names = ["data-" + key.replace(/_/g, "-")];
        if (key === "defense") { names.push("data-detector"); }
        var values = names.map(function (n) { return tr.getAttribute(n); }).filter(function (v) { return v !== null; });
        if (values.length && values.indexOf(sel.value) < 0) { visible = false; }
      });
      tr.style.display = visible ? "" : "none";
    });
  }
  var panel = document.getElementById("provenance-panel");
  document.querySelectorAll("td.traced").forEach(function (td) {
    var keys = td.dataset.keys.split(",");
    td.title = "stored runs: " + keys.map(function (k) { return k.slice(0, 12); }).join(", ") + " (click for provenance)";
    td.addEventListener("click", function () {
      panel.innerHTML = "";
      var close = document.createElement("button"); close.textContent = "close";
      close.addEventListener("click", function () { panel.style.display = "none"; });
      panel.appendChild(close);
      keys.forEach(function (k) {
        var rec = provenance[k], h = document.createElement("h4"), pre = document.createElement("pre");
        h.textContent = "cell " + k + (rec ? " — seed " + rec.seed + ", " + rec.status + ", " + rec.date : " — not stored");
        pre.textContent = rec ? JSON.stringify({spec: rec.spec, versions: rec.versions, env: rec.env, cost: rec.cost}, null, 1) : "";
        panel.appendChild(h); panel.appendChild(pre);
      });
      panel.style.display = "block";
    });
  });
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body>
<header><h1>{title}</h1><ul>
<li>suite <code>{suite}</code> — {description}</li>
<li>config hash <code>{config_hash}</code>; model {model}; seeds {seeds}</li>
<li>versions: {versions}</li>{scope}
<li>torch threads: {threads}</li><li>hardware: {hardware}</li>
<li>generated {generated} from the results store ({stored} of {total} cells stored); click a number for the run that made it</li>
</ul></header>
<nav>{tabs}</nav>
<div class="filters">{filters}</div>
<main>{body}</main>
<div id="provenance-panel"></div>
<script type="application/json" id="provenance">{provenance}</script>
<script>{script}</script>
</body></html>
"""
