"""The paper's Findings 1 and 2 (§3), checked on a suite's stored probe results.

Contributed to the probes page through the ``bdbench_report_sections`` hook (the core leaderboard knows no
plugin): Finding 1 from the ``mean_ablation`` probe, Finding 2 from ``layer_ablation``. Built from the
:class:`bench_core.leaderboard.Board` only (stored results, averaged over seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench_core.report import Column, Row, Section, Table, Text, para

DASH = "—"


def finding1_section(board) -> list[Section]:
    """The paper's Finding 1 checked on stored mean-ablation results: patch (local) attacks should lose their
    ASR when all heads are mean-ablated, global ones when all MLPs are. Empty if the probe is not in the suite."""
    if not board.runs_probe("mean_ablation"):
        return []
    intro = ("Paper: local (patch) attacks live in attention heads, global ones in MLPs — so mean-ablating all "
             "heads should remove a local attack's ASR and mean-ablating all MLPs a global one's. Measured here "
             "(ASR %, mean over seeds; 'holds' = the predicted ablation at least halves the ASR):")
    rows = []
    for name, attack in board.attack_specs.items():
        mean = board.mean_probe_summary("mean_ablation", name)
        if not mean:
            continue
        predicted = "asr_heads" if attack.locality == "local" else "asr_mlps"
        holds = mean[predicted] <= 0.5 * mean["asr_none"]
        rows.append([name, attack.locality, f"{100 * mean['asr_none']:.1f}", f"{100 * mean['asr_heads']:.1f}",
                     f"{100 * mean['asr_mlps']:.1f}", "holds" if holds else "does not hold"])
    return [_section("Finding 1 on this suite's model", 10, intro, "finding1", rows,
                     ["attack", "type", "ASR", "ASR, all AHs ablated", "ASR, all MLPs ablated", "Finding 1"])]


@dataclass(frozen=True)
class Finding2Check:
    """Finding 2 judged on one attack's ``layer_ablation`` summary (one effect). Layers are counted from 0;
    a ``*_tail`` is the largest l whose backward ablation (layers l..L-1 together) halves the ASR, None if none."""

    n_layers: int
    asr: float
    last_heads: float  # ASR with the last layer's heads alone ablated
    heads_tail: int | None
    last_mlp: float  # ASR with the last layer's MLP alone ablated
    best_single_mlp: float  # lowest ASR over single-layer MLP ablations
    mlps_tail: int | None
    heads_in_last_layer: bool
    mlps_spread_late: bool
    verdict: str  # "holds", "does not hold" or "n/a"
    reason: str


FINDING2_MIN_ASR = 0.1
"""Below this unablated ASR there is no backdoor to locate: the verdict is n/a."""


def finding2_check(summary: dict[str, float], locality: str, effect: str = "direct") -> Finding2Check:
    """The Finding 2 criterion on ``layer_ablation`` summary keys ``asr_none`` and
    ``asr_{effect}_{heads|mlps}_{separate|backward}_l{l}``. An ablation *halves* the ASR if it leaves at most
    half of ``asr_none``.

    - heads in the last layer: the last layer's heads alone halve the ASR and no earlier layer's heads alone do;
    - MLPs spread over late layers: no single layer's MLP halves the ASR, but a backward ablation does, starting
      in the second half of the layers (tail start l >= L // 2).

    The paper states the first for local (patch) attacks and the second for global ones, so the verdict checks
    the claim matching ``locality``.
    """
    n = 0
    while f"asr_{effect}_heads_separate_l{n}" in summary:
        n += 1
    if n == 0:
        raise ValueError(f"summary has no layer_ablation keys for effect {effect!r}")
    asr0 = summary["asr_none"]

    def halves(value: float) -> bool:
        return value <= 0.5 * asr0

    def get(kind: str, mode: str, layer: int) -> float:
        return summary[f"asr_{effect}_{kind}_{mode}_l{layer}"]

    def tail(kind: str) -> int | None:
        return next((l for l in reversed(range(n)) if halves(get(kind, "backward", l))), None)

    heads_alone = [l for l in range(n) if halves(get("heads", "separate", l))]
    mlps_alone = [l for l in range(n) if halves(get("mlps", "separate", l))]
    heads_tail, mlps_tail = tail("heads"), tail("mlps")
    heads_ok = heads_alone == [n - 1]
    mlps_ok = not mlps_alone and mlps_tail is not None and mlps_tail >= n // 2
    if locality == "local":
        holds = heads_ok
        if heads_ok:
            reason = "the last layer's AHs alone halve the ASR, no earlier layer's do"
        elif n - 1 not in heads_alone:
            reason = f"the last layer's AHs alone leave {100 * get('heads', 'separate', n - 1):.1f}% ASR"
        else:
            reason = f"layer {heads_alone[0]}'s AHs alone also halve the ASR"
    else:
        holds = mlps_ok
        if mlps_ok:
            reason = f"no single MLP halves the ASR; MLPs {mlps_tail}..{n - 1} together do"
        elif mlps_alone:
            reason = f"layer {mlps_alone[-1]}'s MLP alone halves the ASR"
        elif mlps_tail is None:
            reason = "no backward MLP ablation halves the ASR"
        else:
            reason = f"halving needs MLPs from layer {mlps_tail} of {n}, not only late ones"
    verdict = "holds" if holds else "does not hold"
    if asr0 < FINDING2_MIN_ASR:
        verdict, reason = "n/a", f"unablated ASR {100 * asr0:.1f}% < {100 * FINDING2_MIN_ASR:.0f}%: no backdoor"
    return Finding2Check(n, asr0, get("heads", "separate", n - 1), heads_tail, get("mlps", "separate", n - 1),
                         min(get("mlps", "separate", l) for l in range(n)), mlps_tail, heads_ok, mlps_ok,
                         verdict, reason)


def finding2_section(board) -> list[Section]:
    """The paper's Finding 2 checked on stored layer-ablation results (summaries averaged over seeds), with the
    criterion of :func:`finding2_check` on the direct effect; total-effect numbers shown beside. Empty if the
    probe is not in the suite without a pipeline."""
    if not board.runs_probe("layer_ablation"):
        return []
    intro = ("Paper: infected AHs sit in the last layer (local attacks), infected MLPs are spread over several "
             "late layers (global attacks). Criterion (direct-effect mean-ablation, summaries averaged over "
             "seeds; an ablation halves the ASR if it leaves at most half of it): local — the last layer's AHs "
             "alone halve the ASR and no earlier layer's AHs alone do; global — no single layer's MLP halves "
             "the ASR but ablating MLPs l..L-1 together does for some l in the second half of the layers. "
             "'tail from' = the largest l whose backward ablation (layers l..L-1, counted from 0) halves the "
             "ASR. Cells show direct / total effect; ASR in %:")
    rows = []
    for name, attack in board.attack_specs.items():
        mean = board.mean_probe_summary("layer_ablation", name)
        if "asr_direct_heads_separate_l0" not in mean:  # the verdict needs the direct effect
            continue
        checks = [finding2_check(mean, attack.locality, effect) for effect in ("direct", "total")
                  if f"asr_{effect}_heads_separate_l0" in mean]

        def both(get) -> str:
            return " / ".join(get(c) for c in checks)

        def pct(value: float) -> str:
            return f"{100 * value:.1f}"

        def layer(value: int | None) -> str:
            return DASH if value is None else str(value)

        direct = checks[0]
        rows.append([name, attack.locality, pct(direct.asr), both(lambda c: pct(c.last_heads)),
                     both(lambda c: layer(c.heads_tail)), both(lambda c: pct(c.last_mlp)),
                     both(lambda c: pct(c.best_single_mlp)), both(lambda c: layer(c.mlps_tail)),
                     direct.verdict, direct.reason])
    return [_section("Finding 2 on this suite's model", 20, intro, "finding2", rows,
                     ["attack", "type", "ASR", "ASR, last-layer AHs ablated", "AHs: tail from",
                      "ASR, last-layer MLP ablated", "lowest ASR, one MLP ablated", "MLPs: tail from", "Finding 2",
                      "why"])]


def _section(title: str, order: int, intro: str, name: str, rows: list[list[str]], headers: list[str]) -> Section:
    return Section(page="probes", title=title, order=order, blocks=[
        para(intro),
        Table(name=name, columns=[Column(header=h) for h in headers],
              rows=[Row(cells=[Text(text=str(v)) for v in row], tags={"attack": row[0]}) for row in rows])])


def findings_sections(board) -> list[Section]:
    """The decomp package's contribution to the probes page: Findings 1 and 2 checked on stored results."""
    return [*finding1_section(board), *finding2_section(board)]
