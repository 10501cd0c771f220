"""Data never becomes markup: labels from a suite, metric names and config values from the store, plugin prose,
in every renderer (markdown, HTML, LaTeX, CSV, JSON). No file outside the board is read, no ``javascript:`` URL
is written, no ``<`` from data reaches the HTML unescaped, and the page's provenance still parses."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import pytest
import yaml

import bench_core.suite

from bench_core.leaderboard import write_leaderboard
from bench_core.render_html import render_html
from bench_core.render_latex import latex_table
from bench_core.report import (Column, Image, Page, Report, Row, Section, Table, Text, bullets, heading, link, para,
                               render_markdown, strong)
from bench_core.store import ResultRecord, ResultStore
from bench_core.suite import load_suite

SECRET = "TOP-SECRET-CONTENT-0123456789"
HOSTILE = ["![x]({secret})", "![y](../../secret.txt)", "[click](javascript:alert(1))", "<!--<script>",
           "</script><script>alert(1)</script>", "<img src=x onerror=alert(1)>", "**bold** _em_ # h", "& &amp;"]


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


def _hostile(secret) -> list[str]:
    return [h.format(secret=secret) for h in HOSTILE]


def _report(texts: list[str], board) -> Report:
    rows = [Row(cells=[Text(text=t), Text(text=t)], tags={"attack": t, "defense": t}) for t in texts]
    blocks = [heading(3, *texts), para(*texts, strong(texts[0]), link(texts[2], "javascript:alert(1)")),
              bullets(*texts), Image(file="../secret.txt", alt=texts[0]), Image(file=texts[0], alt="a"),
              Table(name="t", caption=texts[1], columns=[Column(header=texts[0]), Column(header=texts[3])], rows=rows)]
    return Report(suite=texts[4], description=texts[5], config_hash="abc", model=texts[6], seeds=[0],
                  versions={texts[0]: texts[3]}, scope=texts[2], threads=texts[3], hardware=texts[5],
                  generated="2026-12-07", stored=1, total=1,
                  pages=[Page(name="defenses", title=texts[3], sections=[
                      Section(page="defenses", title=texts[4], blocks=blocks)])],
                  provenance={"k": {"label": texts[4], "more": texts[3]}})


def _check_html(text: str) -> None:
    assert SECRET not in text and base64.b64encode(SECRET.encode()).decode()[:20] not in text
    assert not re.search(r'(href|src)="\s*javascript:', text, re.I)
    assert "<img src=x" not in text and "<script>alert" not in text and "<!--<script>" not in text
    # exactly the page's own two script elements (the provenance JSON and the code)
    assert len(re.findall(r"<script[ >]", text)) == 2 and text.count("</script>") == 2
    provenance = re.search(r'<script type="application/json" id="provenance">(.*?)</script>', text, re.S).group(1)
    json.loads(provenance)


def _check_markdown(text: str) -> None:
    assert SECRET not in text
    assert re.search(r"(?<!\\)!\[", text) is None  # no image from data
    # the characters are there, backslash-escaped: text, not a link, a tag or a comment
    assert re.search(r"(?<!\\)\]\(\s*javascript:", text, re.I) is None
    assert re.search(r"(?<!\\)<(script|/script|img|!--)", text, re.I) is None


def test_every_renderer_prints_hostile_text_as_text(tmp_path, secret):
    figures = tmp_path / "board" / "figures"
    figures.mkdir(parents=True)
    report = _report(_hostile(secret), figures)
    html = render_html(report, figures)
    _check_html(html)
    assert json.loads(re.search(r'id="provenance">(.*?)</script>', html, re.S).group(1))["k"]["more"] == "<!--<script>"
    _check_markdown(render_markdown(report.pages[0].sections[0], figures))
    tex = latex_table(report.pages[0].sections[0].blocks[-1], "c", "tab:t", report)
    assert SECRET not in tex and "\\input" not in tex


def test_a_hostile_suite_board_in_every_format(tmp_path, secret, monkeypatch):
    """A shared suite whose labels try to read a file, run script and break the page, written with
    ``bdbench leaderboard``'s code (no run needed), plus a stored record with a hostile metric name and config."""
    monkeypatch.setenv("BDBENCH_HOME", str(tmp_path / "home"))
    raw = yaml.safe_load((Path(bench_core.suite.__file__).parent / "suites" / "quick.yaml").read_text())
    raw["description"] = f"![d]({secret}) <!--<script>"
    raw["attacks"] = [{"name": "badnet", "label": f"![x]({secret})", "config": {"patch_size": 4}},
                      {"name": "blended", "label": "[c](javascript:alert(1))"}]
    raw["pipelines"] = [[], [{"name": "decomp_rep", "label": "<!--<script>"}]]
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(raw))
    suite = load_suite(str(path))
    store = ResultStore()
    store.put(ResultRecord(key="hostile-record", suite=suite.name, model="m", attack=f"![x]({secret})", seed=0,
                           status="ok", metrics={"<script>alert(1)</script>": 0.5}, config_hash=suite.config_hash(),
                           spec={"attack": {"config": {"x": "</script><!--"}}}))
    out = tmp_path / "board"
    write_leaderboard(suite, out, store=store, formats=["markdown", "html", "latex", "csv", "json"])
    _check_html((out / "index.html").read_text())
    pages = list(out.glob("*.md"))
    assert pages
    for md in pages:
        _check_markdown(md.read_text())
    for tex in (out / "latex").glob("*.tex"):
        assert SECRET not in tex.read_text()
    json.loads((out / "report.json").read_text())
    list(csv.reader((out / "numbers.csv").open()))
