"""The adaptive page (``adaptive.md``): each stress test against its targets, beside its plain counterpart.

Built from stored results only (a :class:`bench_core.leaderboard.Board`). For every adaptive attack of the
suite and every defense or detector it targets:

* defenses — the plain attack's and the adaptive attack's ASR under the defense, the adaptive attack's RA
  and CACC under it and its ASR without a defense (an adaptive attack must keep >= 90% there, or the page
  says it does not: a defense that "holds" against a weak attack proves nothing); an availability attack
  (plain counterpart ``none``) is judged on CACC instead;
* detectors — AUROC (TPR at 5% FPR) on the plain and on the adaptive attack.

Verdicts (means over seeds): a defense *breaks* when the adaptive attack's ASR under it exceeds the plain
attack's by at least :data:`BREAK_POINTS` points (availability: CACC falls by that much), a detector is
*evaded* when its AUROC falls by that much; the difference is flagged "within seed noise" when it is
smaller than the two 95% intervals' half-widths together. Sweeps (several entries of one adaptive attack
that differ in one config value) are drawn as figures.
"""

from __future__ import annotations

from typing import Any

from bench_core.keys import NO_ATTACK
from bench_core.report import Column, Combo, Figure, Row, Section, Stat, Table, Text, heading, para, rich, strong

BREAK_POINTS = 10.0
"""A defense breaks (a detector is evaded) when the adaptive attack moves its metric by this many points."""
KEEP_ASR = 0.90
"""What an adaptive attack must keep without a defense."""
ALREADY_BROKEN = 0.5
"""Plain defended ASR from which a defense counts as broken by the plain attack already."""
DETECTS = 0.6
"""Plain AUROC below which a detector counts as failing on the plain attack already."""


def adaptive_sections(board) -> list[Section]:
    """The adaptive page's sections (empty when the suite has no adaptive attack). ``board.focus``, when set,
    keeps only the stress tests of that defense or detector (``bdbench stress``)."""
    focus = getattr(board, "focus", None)
    adaptive = [a for a in board.attack_specs.values() if a.targets]
    if not adaptive:
        return []
    defense_rows, detector_rows = [], []
    for attack in adaptive:
        for target in attack.targets:
            if focus is not None and focus not in (target.name, target.label):
                continue
            if target.kind == "detector":
                detector_rows.append(_detector_row(board, attack, target))
            else:
                defense_rows.extend(_defense_row(board, attack, target, pipe) for pipe in _pipelines(board, target))
    blocks: list[Any] = [_INTRO]
    if defense_rows:
        blocks.append(heading(3, "Against defenses"))
        blocks.append(Table(name="adaptive_defenses", rows=defense_rows, columns=[
            Column(header="stress test"), Column(header="target"), Column(header="attacker knows"),
            Column(header="plain attack"), Column(header="plain ASR under target", metric="asr"),
            Column(header="adaptive ASR under target", metric="asr"),
            Column(header="adaptive RA under target", metric="ra"),
            Column(header="CACC under target: plain / adaptive", metric="cacc"),
            Column(header="adaptive ASR, no defense", metric="asr"), Column(header="verdict")]))
    if detector_rows:
        blocks.append(heading(3, "Against detectors"))
        blocks.append(Table(name="adaptive_detectors", rows=detector_rows, columns=[
            Column(header="stress test"), Column(header="target"), Column(header="attacker knows"),
            Column(header="plain attack"), Column(header="plain AUROC (TPR@5%FPR)", metric="auroc"),
            Column(header="adaptive AUROC (TPR@5%FPR)", metric="auroc"),
            Column(header="adaptive ASR, no defense", metric="asr"), Column(header="verdict")]))
    blocks += _sweeps(board, adaptive, focus)
    title = "Adaptive attacks" + (f" against {focus}" if focus else "")
    return [Section(page="adaptive", title=title, order=0, blocks=blocks)]


_INTRO = para(
    "Each stress test (plugins/adaptive) knows the defense or detector it targets (what it knows: the "
    "'attacker knows' column) and is compared with its plain counterpart on the same rows. Percent, mean over "
    "seeds ± 95% interval. Verdict: a defense ", strong("breaks"), " when the adaptive attack's ASR under it "
    f"exceeds the plain attack's by at least {BREAK_POINTS:.0f} points (availability attacks: when CACC falls by "
    "that much); a detector is ", strong("evaded"), f" when its AUROC falls by {BREAK_POINTS:.0f} points or more. "
    f"An adaptive attack must keep at least {100 * KEEP_ASR:.0f}% ASR without a defense; where it does not, the "
    "verdict says so — a defense holding against a weak attack is no evidence.")


def _plain_label(board, attack) -> str | None:
    """The suite's label of the attack's plain counterpart (a non-adaptive entry of that name), or ``none``."""
    if attack.plain in (None, NO_ATTACK):
        return NO_ATTACK
    for label, spec in board.attack_specs.items():
        if spec.name == attack.plain and not spec.targets:
            return label
    return None


def _pipelines(board, target) -> list[tuple[str, ...]]:
    """The suite's pipelines containing ``target`` (by label)."""
    return [tuple(d.label for d in p) for p in board.pipelines if any(d.label == target.label for d in p)]


def _mean(stat: Stat) -> float | None:
    return stat.mean if stat.values else None


def _noise(a: Stat, b: Stat) -> bool:
    """Whether the difference of the means is within the two intervals' half-widths together."""
    ha, hb = a.half, b.half
    if ha is None or hb is None:
        return False
    return abs(a.mean - b.mean) < ha + hb


def _keeps(no_defense: Stat) -> str:
    asr = _mean(no_defense)
    if asr is None or asr >= KEEP_ASR:
        return ""
    return f"; adaptive attack weak: {100 * asr:.1f}% ASR without a defense (< {100 * KEEP_ASR:.0f}%)"


def _knows(attack) -> str:
    return attack.threat_model.split("knows: ", 1)[-1]


def _defense_row(board, attack, target, pipeline: tuple[str, ...]) -> Row:
    plain = _plain_label(board, attack)
    def under(label: str, metric: str, pipe: tuple[str, ...] = pipeline) -> Stat:
        return board.stat(board.select(kind="eval", attack=label, pipeline=pipe), metric)

    no_def = under(attack.label, "asr", ())
    adaptive_asr, adaptive_cacc = under(attack.label, "asr"), under(attack.label, "cacc")
    if plain is None:  # the suite lacks the plain counterpart: nothing to compare with
        plain_asr, plain_cacc = Stat(metric="asr", missing="not in suite"), Stat(metric="cacc", missing="—")
    else:
        plain_asr, plain_cacc = under(plain, "asr"), under(plain, "cacc")
    if plain == NO_ATTACK:
        plain_asr = Stat(metric="asr", missing="n/a")
        verdict = _availability_verdict(plain_cacc, adaptive_cacc)
    else:
        verdict = _defense_verdict(plain_asr, adaptive_asr)
    verdict += _keeps(no_def) if plain != NO_ATTACK else ""
    label = " → ".join(pipeline)
    return Row(cells=[Text(text=attack.label), Text(text=label), Text(text=_knows(attack)),
                      Text(text=plain or f"{attack.plain} (not in suite)"), plain_asr, adaptive_asr,
                      under(attack.label, "ra"), Combo(parts=[plain_cacc, adaptive_cacc]), no_def, _verdict_cell(verdict)],
               oracle=target.oracle, tags={"attack": attack.label, "defense": label, "target": target.name,
                                           "threat_model": target.threat_model})


def _signed(points: float) -> str:
    """A verdict's change in points, ``+1.9`` / ``−1.1``: always signed, with the typographic minus (U+2212)."""
    text = f"{points:+.1f}"
    return "−" + text[1:] if text.startswith("-") else text


def _verdict_cell(verdict: str) -> Text:
    """A verdict (composed here from fixed words and numbers) as a cell, its leading **word** set in bold."""
    if verdict.startswith("**"):
        word, _, rest = verdict[2:].partition("**")
        return rich(strong(word), rest)
    return Text(text=verdict)


def _defense_verdict(plain: Stat, adaptive: Stat) -> str:
    p, a = _mean(plain), _mean(adaptive)
    if p is None or a is None:
        return "—"
    if p >= ALREADY_BROKEN:
        return f"broken by the plain attack already ({100 * p:.1f}% ASR)"
    delta = 100 * (a - p)
    if delta >= BREAK_POINTS:
        return f"**breaks**: ASR {_signed(delta)} points" + (" (within seed noise)" if _noise(plain, adaptive) else "")
    return f"holds (ASR {_signed(delta)} points)"


def _availability_verdict(plain_cacc: Stat, adaptive_cacc: Stat) -> str:
    p, a = _mean(plain_cacc), _mean(adaptive_cacc)
    if p is None or a is None:
        return "—"
    drop = 100 * (p - a)
    if drop >= BREAK_POINTS:
        return f"**breaks** (availability): CACC {_signed(-drop)} points" + (
            " (within seed noise)" if _noise(plain_cacc, adaptive_cacc) else "")
    return f"holds (CACC {_signed(-drop)} points)"


def _detector_row(board, attack, target) -> Row:
    plain = _plain_label(board, attack)

    def auroc(label: str | None) -> tuple[Stat, Stat]:
        cells = board.select(kind="detector", attack=label, detector=target.label) if label else []
        return board.stat(cells, "auroc"), board.stat(cells, "tpr_at_5fpr")

    plain_auroc, plain_tpr = auroc(plain if plain != NO_ATTACK else None)
    adaptive_auroc, adaptive_tpr = auroc(attack.label)
    no_def = board.stat(board.select(kind="eval", attack=attack.label, pipeline=()), "asr")
    p, a = _mean(plain_auroc), _mean(adaptive_auroc)
    if p is None or a is None:
        verdict = "—"
    elif p < DETECTS:
        verdict = f"fails on the plain attack already (AUROC {100 * p:.1f}%)"
    else:
        drop = 100 * (p - a)
        change = f"AUROC {_signed(-drop)} points"
        if drop >= BREAK_POINTS:
            verdict = f"**evaded**: {change}" + (" (within seed noise)" if _noise(plain_auroc, adaptive_auroc) else "")
        else:
            verdict = f"holds ({change})"
    verdict += _keeps(no_def)
    return Row(cells=[Text(text=attack.label), Text(text=target.label), Text(text=_knows(attack)),
                      Text(text=plain or f"{attack.plain} (not in suite)"),
                      Combo(parts=[plain_auroc, plain_tpr], template="{0} ({1})"),
                      Combo(parts=[adaptive_auroc, adaptive_tpr], template="{0} ({1})"), no_def, _verdict_cell(verdict)],
               oracle=target.oracle, tags={"attack": attack.label, "detector": target.label, "target": target.name,
                                           "threat_model": target.threat_model})


def _sweeps(board, adaptive, focus) -> list[Any]:
    """One figure per (adaptive attack name, target) with several entries differing in one config value:
    the defended metric (ASR under a defense, AUROC of a detector) against that value, adaptive vs plain."""
    by_name: dict[str, list] = {}
    for a in adaptive:
        by_name.setdefault(a.name, []).append(a)
    blocks: list[Any] = []
    for name, entries in by_name.items():
        if len(entries) < 2:
            continue
        keys = [k for k in entries[0].config if len({str(e.config.get(k)) for e in entries}) > 1]
        if len(keys) != 1:
            continue
        key = keys[0]
        targets = {t.label: t for e in entries for t in e.targets
                   if focus is None or focus in (t.name, t.label)}
        for target in targets.values():
            points = sorted((e.config[key], e) for e in entries if any(t.label == target.label for t in e.targets))
            if len(points) < 2:
                continue
            xs = [float(x) for x, _ in points]
            if target.kind == "detector":
                metric, ylabel = "auroc", "AUROC %"
                get = lambda label: board.stat(board.select(kind="detector", attack=label, detector=target.label), metric)  # noqa: E731
                series = {f"{name} vs {target.label}": [_pct(get(e.label)) for _, e in points]}
            else:
                metric, ylabel = "asr", "ASR %"
                pipes = _pipelines(board, target)
                if not pipes:
                    continue
                get = lambda label: board.stat(board.select(kind="eval", attack=label, pipeline=pipes[0]), metric)  # noqa: E731
                series = {f"{name} under {' → '.join(pipes[0])}": [_pct(get(e.label)) for _, e in points],
                          f"{name}, no defense": [_pct(board.stat(board.select(kind="eval", attack=e.label, pipeline=()),
                                                                   "asr")) for _, e in points]}
            plain = _plain_label(board, entries[0])
            if plain not in (None, NO_ATTACK):
                value = _pct(get(plain))
                series[f"plain {plain} (baseline)"] = [value] * len(xs)
            if all(v is None for ys in series.values() for v in ys):
                continue
            blocks.append(Figure(name=f"sweep_{name}_{target.label}", caption=f"{name}: {key} sweep against {target.label}",
                                 spec={"type": "line", "title": f"{name} vs {target.label}: {key} sweep", "xlabel": key,
                                       "ylabel": ylabel, "x": xs,
                                       "series": {k: [float("nan") if v is None else v for v in ys]
                                                  for k, ys in series.items()}}))
    if blocks:
        blocks[:0] = [heading(3, "Sweeps"), para("Means over seeds; the plain counterpart is drawn dashed.")]
    return blocks


def _pct(stat: Stat) -> float | None:
    return None if not stat.values else 100 * stat.mean
