"""The result model and its renderers: metric metadata, markdown, LaTeX (compiled when a TeX engine is
installed), CSV / JSON, and the plugin allowlist."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest


from bench_core.metrics import CORE_METRICS, metric_catalogue, metric_info
from bench_core.registry import default_registry
from bench_core.report import (Column, Combo, Page, Report, Row, Section, Stat, Table, Text, format_stat, para,
                               markdown_table)

from conftest import make_context


def _report(tables: list[Table]) -> Report:
    return Report(suite="t", description="d", config_hash="abc", model="m", seeds=[0, 1, 2], versions={"x": "1"},
                  scope="", generated="2026-12-03", stored=3, total=3,
                  pages=[Page(name="defenses", title="Defenses — t",
                              sections=[Section(page="defenses", title="", blocks=[para("intro"), *tables])])])


def _defenses() -> Table:
    def s(metric, values):
        return Stat(metric=metric, values=values, seeds=list(range(len(values))), keys=[f"k{metric}{i}" for i in
                                                                                         range(len(values))])
    return Table(name="defenses", columns=[Column(header="defense pipeline"), Column(header="badnet ASR / CACC")],
                 rows=[Row(cells=[Text(text="no defense"), Combo(parts=[s("asr", [0.9, 0.92, 0.94]),
                                                                        s("cacc", [0.9, 0.9, 0.9])])]),
                       Row(cells=[Text(text="pdb_oracle"), Combo(parts=[s("asr", [0.1, 0.1, 0.1]),
                                                                        s("cacc", [0.6, 0.6, 0.6])])], oracle=True),
                       Row(cells=[Text(text="cleanclip"), Combo(parts=[Stat(metric="asr", missing="not run"),
                                                                       Stat(metric="cacc", missing="not run")])])])


def test_core_metrics_have_units_directions_and_definitions():
    names = {m.name for m in CORE_METRICS}
    assert {"cacc", "asr", "asr_all_images", "ra", "auroc", "tpr_at_5fpr", "ece", "nll", "ms_per_image"} <= names
    assert metric_info("asr").direction == "lower" and metric_info("cacc").direction == "higher"
    assert metric_info("asr").header == "ASR % ↓" and metric_info("nll").unit == "nats"
    with pytest.raises(KeyError, match="did you mean"):
        metric_info("asrr")


def test_every_number_the_builtin_probes_store_is_declared(tiny_data, tiny_model):
    """Probe tables and summaries: each numeric key has metadata (declared by its plugin, never guessed)."""
    from bench_core.interfaces import ProbeData
    from bench_core.zeroshot import ZeroShotClassifier

    reg = default_registry()
    images, labels = tiny_data.evaluation.images[:24], tiny_data.evaluation.labels[:24]
    triggered = images.clone()
    triggered[:, :, :4, :4] = 1
    data = ProbeData(images, labels, triggered, labels, 0)
    clf = ZeroShotClassifier.build(tiny_model, tiny_data.classnames, tiny_data.templates)
    catalogue = metric_catalogue()
    undeclared = set()
    for name in reg.probes.names():
        cls = reg.probes.get(name)
        probe = cls(cls.presets.get("quick", {}))
        ctx = make_context(tiny_data, model=tiny_model)
        target = reg.create("defense", "pdb", {}).wrap(clf, ctx) if name == "pdb_robustness" else clf
        result = probe.run(target, data, ctx.restricted_to(cls.threat_model.reads))
        keys = set(result.summary) | {k for rows in result.tables.values() for row in rows for k, v in row.items()
                                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for key in keys:
            try:
                metric_info(key)
            except KeyError:
                undeclared.add(f"{name}: {key}")
    assert not undeclared, sorted(undeclared)
    assert catalogue["cacc"].direction == "higher"


def test_markdown_shows_intervals_oracles_and_missing_cells():
    text = markdown_table(_defenses())
    assert "| no defense" in text and "92.0 ± 5.0 / 90.0 ± 0.0" in text
    assert "pdb_oracle **(oracle)**" in text and "| not run" in text
    assert format_stat(Stat(metric="asr", values=[0.5])) == "50.0"  # one seed: the value alone


def test_latex_bolds_the_best_per_column_marks_oracles_and_compiles(tmp_path):
    from bench_core.render_latex import escape, write_latex

    paths = write_latex(_report([_defenses()]), tmp_path)
    tex = (tmp_path / "defenses_defenses.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\textbf{10.0 $\pm$ 0.0} / 60.0 $\pm$ 0.0" in tex  # lowest ASR bold; CACC 60 is not the best
    assert r"92.0 $\pm$ 5.0 / \textbf{90.0 $\pm$ 0.0}" in tex  # highest CACC bold
    assert r"pdb\_oracle$^\dagger$" in tex and "oracle (knows" in tex
    assert escape("a_b & 5% → **x**") == r"a\_b \& 5\% $\rightarrow$ **x**"  # data: no markup is read from it
    from bench_core.render_latex import escape_spans
    from bench_core.report import rich, strong

    assert escape_spans(rich(strong("breaks"), ": 5%").spans) == r"\textbf{breaks}: 5\%"
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no TeX engine installed (pdflatex): the tables were written but not compiled")
    done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", paths[-1].name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "tables.pdf").is_file()


def test_csv_has_every_number_with_its_runs_and_json_round_trips(tmp_path):
    from bench_core.render_data import write_csv, write_json

    report = _report([_defenses()])
    rows = list(csv.DictReader(write_csv(report, tmp_path / "n.csv").open()))
    assert len(rows) == 4  # two stats in each of two stored cells; 'not run' has no number
    first = rows[0]
    assert first["metric"] == "asr" and first["unit"] == "percent" and first["direction"] == "lower"
    assert first["n_seeds"] == "3" and first["cell_keys"] == "kasr0;kasr1;kasr2" and float(first["ci95_half"]) > 0
    back = Report.model_validate_json(write_json(report, tmp_path / "r.json").read_text())
    assert back == report


def _bdbench_list(env_value: str | None):
    import os

    env = {k: v for k, v in os.environ.items() if k != "BDBENCH_PLUGINS"}
    if env_value is not None:
        env["BDBENCH_PLUGINS"] = env_value
    return subprocess.run([sys.executable, "-m", "bench_core.cli", "list", "--json"], capture_output=True, text=True,
                          env=env, timeout=120)


def test_plugin_allowlist_limits_what_is_loaded():
    import json

    done = _bdbench_list("bdbench-attacks, bdbench_pdb")
    assert done.returncode == 0, done.stderr
    plugins = json.loads(done.stdout)["plugins"]
    sources = {p["source"].split()[0] for p in plugins}
    assert sources == {"bdbench-attacks", "bdbench-pdb"}, sources
    assert all(len(p["source"].split()) == 2 for p in plugins)  # distribution and version shown
    done = _bdbench_list("bdbench-atacks")
    assert done.returncode == 2 and "did you mean 'bdbench-attacks'" in done.stderr


def test_leaderboard_cli_writes_every_format(tmp_path, monkeypatch):
    from bench_core.cli import main
    from bench_core.runner import Runner
    from bench_core.suite import load_suite

    Runner(load_suite("quick"), log=lambda m: None).run()
    assert main(["leaderboard", "--suite", "quick", "--out", str(tmp_path), "--format", "all"]) == 0
    for name in ("README.md", "defenses.md", "index.html", "latex/tables.tex", "latex/detectors_detectors.tex",
                 "numbers.csv", "report.json"):
        assert (tmp_path / name).is_file(), name
    assert main(["leaderboard", "--suite", "quick", "--out", str(tmp_path), "--format", "pdf"]) == 2



def test_the_header_states_the_thread_counts_of_the_stored_cells_and_flags_a_mix():
    """Float reductions depend on the torch thread count, so a board whose cells were computed at different
    counts says so (with how many of each) instead of passing as one run."""
    from types import SimpleNamespace

    from bench_core.leaderboard import Board

    def board(*threads):
        return SimpleNamespace(records={str(i): SimpleNamespace(status="ok", env={"threads": t} if t else {})
                                        for i, t in enumerate(threads)})

    assert Board.threads_note(board(2, 2, 2)) == "2 per unit (every stored cell)"
    mixed = Board.threads_note(board(1, 2, 2, None))
    assert mixed.startswith("1 (1 cells), 2 (2 cells), unrecorded (1 cells) — mixed")
    assert "resources.torch_threads" in mixed
    assert Board.threads_note(SimpleNamespace(records={})) == "none stored"


def test_a_bumped_attack_version_shows_in_the_page_header_and_the_provenance(tmp_path, monkeypatch):
    """Every plugin a cell ran — the attack it faces included — is in its record's versions, so a version bump
    of the attack reaches the header of every page and the provenance of its numbers."""
    import json
    import re

    from bdbench_attacks.badnet import BadNet

    from bench_core.leaderboard import write_leaderboard
    from bench_core.runner import Runner
    from bench_core.suite import load_suite

    monkeypatch.setattr(BadNet, "version", "9.9.9")
    suite = load_suite("quick")
    runner = Runner(suite, log=lambda m: None)
    assert runner.run()["failed"] == 0
    records = [r for r in runner.store.all() if r.attack == "badnet"]
    assert records and all(r.versions.get("badnet") == "9.9.9" for r in records)
    out = tmp_path / "board"
    write_leaderboard(suite, out, store=runner.store, plan=runner.plan, formats=["markdown", "html"])
    for page in ("defenses.md", "detectors.md", "probes.md"):
        assert "badnet 9.9.9" in (out / page).read_text(), page
    html = (out / "index.html").read_text()
    provenance = json.loads(re.search(r'id="provenance">(.*?)</script>', html, re.S).group(1))
    assert any(p.get("versions", {}).get("badnet") == "9.9.9" for p in provenance.values())
