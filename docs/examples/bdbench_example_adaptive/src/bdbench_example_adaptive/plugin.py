"""Entry point: the adaptive attack and its report section (hookimpls only)."""

from bench_core import hookimpl
from bench_core.report import Column, Row, Section, Table, Text, para

from bdbench_example_adaptive.attack import MedianAwarePatch


@hookimpl
def bdbench_register_attacks():
    return [MedianAwarePatch]


@hookimpl
def bdbench_report_sections(board):
    """Per seed: the median-aware patch's ASR without a defense and under each pipeline it targets. Built from
    the board (stored results) only; nothing when the suite does not run the attack."""
    specs = [a for a in board.attack_specs.values() if a.name == MedianAwarePatch.name]
    if not specs:
        return []
    targets = {t.label for t in specs[0].targets}
    pipelines = [(), *(tuple(d.label for d in p) for p in board.pipelines if any(d.label in targets for d in p))]
    rows = []
    for spec in specs:
        for seed in board.suite.seeds:
            cells = [board.stat(board.select(kind="eval", attack=spec.label, pipeline=p, seed=seed), "asr")
                     for p in pipelines]
            rows.append(Row(cells=[Text(text=spec.label), Text(text=str(seed)), *cells],
                            tags={"attack": spec.label}))
    headers = [" → ".join(p) or "no defense" for p in pipelines]
    return [Section(page="adaptive", title="Median-aware patch, per seed", order=80, blocks=[
        para("Contributed by bdbench-example-adaptive: the attack's ASR on each seed."),
        Table(name="median_aware_per_seed",
              columns=[Column(header="attack"), Column(header="seed"),
                       *(Column(header=f"ASR, {h}", metric="asr") for h in headers)],
              rows=rows)])]
