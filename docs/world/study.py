"""The regime study's tables, from the results store (docs/world.md, section 3).

Usage: ``python docs/world/study.py [SUITE.yaml ...] > docs/world/results.md``. For each suite (default: every
file in ``docs/world/suites/``) it expands the plan, reads the stored cells by key and prints one row per suite:
the clean fine-tuned model's CACC, the clean pretrained model's CACC, each plain attack's ASR and CACC, and,
where the suite ran them, the defenses' and detectors' numbers and the effects E1-E8 of the selection rule.
Nothing is computed here: a cell that is not stored prints as a dash. The last section lists every cell key read.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_core.plan import expand
from bench_core.registry import default_registry
from bench_core.store import ResultStore
from bench_core.suite import load_suite

HERE = Path(__file__).parent
ATTACKS = ("badnet", "blended", "label_consistent", "issba", "badclip")
DASH = "—"


def pct(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}"


class Point:
    """One suite's stored cells, looked up by (attack, pipeline, detector, probe) at one seed."""

    def __init__(self, path: Path, store: ResultStore, registry, seed: int = 0):
        self.path, self.suite = path, load_suite(str(path))
        plan = expand(self.suite, registry)
        self.cells = [c for c in plan.cells if c.seed == seed]
        found = store.get_many(c.key for c in self.cells)
        self.records = {(c.attack.split("[")[0], c.pipeline, c.detector, c.probe): found.get(c.key)
                        for c in self.cells}
        self.keys = [(c, found.get(c.key)) for c in self.cells]

    def metric(self, name: str, attack: str = "none", pipeline: tuple[str, ...] = (), detector=None, probe=None):
        rec = self.records.get((attack, pipeline, detector, probe))
        if rec is None or rec.status != "ok":
            return None
        return rec.metrics.get(name)

    @property
    def label(self) -> str:
        f = self.suite.finetune
        rates = {a.config.get("poison_rate") for a in self.suite.attacks if a.config}
        return f"lr {f.lr:g}, {f.epochs} ep, {'/'.join(f'{100 * r:g}%' for r in rates if r) or '5%'}"

    def eligible(self) -> bool | None:
        clean = self.metric("cacc")
        asrs = [self.metric("asr", a) for a in ATTACKS]
        if clean is None or any(a is None for a in asrs):
            return None
        return clean < 0.9 and all(a >= 0.9 for a in asrs)

    def drop(self, attack: str, pipeline: tuple[str, ...]) -> tuple[float | None, float | None]:
        """(ASR fall, CACC fall) in points under ``pipeline``."""
        base_asr, base_cacc = self.metric("asr", attack), self.metric("cacc", attack)
        asr, cacc = self.metric("asr", attack, pipeline), self.metric("cacc", attack, pipeline)
        if None in (base_asr, base_cacc, asr, cacc):
            return None, None
        return 100 * (base_asr - asr), 100 * (base_cacc - cacc)

    def effects(self, cleanclip: tuple[str, ...]) -> dict[str, bool | None]:
        """E1-E8 of the selection rule; None (n/a) where the effect cannot be observed: a defense or detector
        effect on an attack with under 50% ASR without a defense (no backdoor to remove or detect), an ablation
        effect under 10% (no backdoor to locate)."""
        def backdoored(attack, floor=0.5):
            asr = self.metric("asr", attack)
            return asr is not None and asr >= floor

        def removes(attack, pipeline, max_cost):
            asr_fall, cacc_fall = self.drop(attack, pipeline)
            if asr_fall is None or not backdoored(attack):
                return None
            return asr_fall >= 50 and cacc_fall <= max_cost

        def ablation(attack, which):
            none = self.metric("asr_none", attack, probe="mean_ablation")
            ablated = self.metric(f"asr_{which}", attack, probe="mean_ablation")
            return None if none is None or ablated is None or none < 0.1 else ablated <= 0.5 * none

        badclip = self.metric("asr", "badclip", cleanclip)
        oracle_asr = self.metric("asr", "badnet", ("pdb.oracle_reserve",))
        oracle_fall = self.drop("badnet", ("pdb.oracle_reserve",))[1]
        strip_b = self.metric("auroc", "badnet", detector="strip")
        strip_g = self.metric("auroc", "blended", detector="strip")
        return {
            "E1": removes("badnet", cleanclip, 5), "E2": removes("blended", cleanclip, 5),
            "E3": None if badclip is None or not backdoored("badclip") else badclip >= 0.5,
            "E4": removes("badnet", ("decomp_rep",), 3),
            "E5": ablation("badnet", "heads"), "E6": ablation("blended", "mlps"),
            "E7": None if oracle_asr is None or not backdoored("badnet") else (oracle_asr < 0.1 and oracle_fall <= 5),
            "E8": None if strip_b is None or strip_g is None or not (backdoored("badnet") and backdoored("blended"))
            else (strip_b >= 0.8 and strip_g <= 0.6),
        }


def cleanclip_label(point: Point) -> tuple[str, ...] | None:
    """The CleanCLIP pipeline a stage-B suite runs against the attacks (its calibrated entry)."""
    for (attack, pipeline, detector, probe) in point.records:
        if attack == "badnet" and pipeline and pipeline[0].startswith("cleanclip") and detector is None \
                and probe is None:
            return pipeline
    return None


def stage_a(points: list[Point]) -> list[str]:
    head = ["point", "fine-tune", "CACC clean FT", "CACC pretrained"] + [f"ASR {a}" for a in ATTACKS] + \
        [f"CACC {a}" for a in ATTACKS] + ["eligible"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        ok = p.eligible()
        row = [p.suite.name, p.label, pct(p.metric("cacc")), pct(p.metric("cacc_pretrained"))]
        row += [pct(p.metric("asr", a)) for a in ATTACKS] + [pct(p.metric("cacc", a)) for a in ATTACKS]
        row.append(DASH if ok is None else ("yes" if ok else "no"))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def stage_b(points: list[Point]) -> list[str]:
    lines = []
    for p in points:
        cc = cleanclip_label(p)
        if cc is None:
            continue
        lines += ["", f"### {p.suite.name} ({p.label})", "",
                  "| attack | ASR none | ASR (CACC) Decomp-Rep | ASR (CACC) " + cc[0] + " | ASR (CACC) PDB | "
                  "ASR (CACC) oracle PDB | AUROC STRIP | AUROC SCALE-UP | AUROC TeCo | AUROC Decomp-Det | "
                  "ASR heads / MLPs ablated |", "|" + "---|" * 11]
        for a in ATTACKS:
            def under(pipeline):
                return f"{pct(p.metric('asr', a, pipeline))} ({pct(p.metric('cacc', a, pipeline))})"
            ablate = (f"{pct(p.metric('asr_heads', a, probe='mean_ablation'))} / "
                      f"{pct(p.metric('asr_mlps', a, probe='mean_ablation'))}")
            lines.append("| " + " | ".join([
                a, pct(p.metric("asr", a)), under(("decomp_rep",)), under(cc), under(("pdb",)),
                under(("pdb.oracle_reserve",)),
                *(pct(p.metric("auroc", a, detector=d)) for d in ("strip", "scale_up", "teco", "decomp_det")),
                ablate]) + " |")
        effects = p.effects(cc)
        score = sum(bool(v) for v in effects.values())
        observable = sum(v is not None for v in effects.values())
        lines += ["", "Effects: " + ", ".join(f"{k} {'n/a' if v is None else ('yes' if v else 'no')}"
                                               for k, v in effects.items())
                  + f" — **{score} reproduced** of {observable} observable (n/a: no backdoor to act on)"]
    return lines


CALIBRATION_LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
MAX_REFERENCE_DROP = 2.0  # points of ref_cacc CleanCLIP may cost on the clean fine-tuned model (docs/world.md §4)


def calibration(cal_path: Path, store: ResultStore, registry) -> tuple[list[tuple[float, float | None]], float | None,
                                                                        float | None]:
    """CleanCLIP's calibration rule on one point: ((lr, ref_cacc) per candidate, the unrepaired ref_cacc, the
    chosen lr — the largest whose ref_cacc is within MAX_REFERENCE_DROP points of the unrepaired model's)."""
    point = Point(cal_path, store, registry)
    # the unrepaired model: the clean fine-tuned model's cell of the stage-A suite (same shared settings)
    base = Point(cal_path.with_name(cal_path.name.replace(".cal", "")), store, registry).metric("ref_cacc")
    rows = []
    for (attack, pipeline, _, _), rec in point.records.items():
        if attack == "none" and pipeline and rec is not None and rec.status == "ok":
            lr = rec.spec["defenses"][0]["config"]["lr"] if rec.spec.get("defenses") else None
            rows.append((lr, rec.metrics.get("ref_cacc")))
    rows.sort(key=lambda r: r[0] or 0)
    ok = [lr for lr, ref in rows if base is not None and ref is not None and 100 * (base - ref) <= MAX_REFERENCE_DROP]
    return rows, base, (max(ok) if ok else None)


def main(paths: list[str]) -> None:
    files = [Path(p) for p in paths] or sorted((HERE / "suites").glob("*.yaml"))
    store, registry = ResultStore(), default_registry()
    points = [Point(f, store, registry) for f in files]
    print("## Stage A: plain attacks (seed 0, %)\n")
    print("\n".join(stage_a(points)))
    b = stage_b(points)
    if b:
        print("\n## Stage B: defenses, detectors and the mean-ablation probe (seed 0, %)")
        print("\n".join(b))
    print("\n## Cells read\n")
    for p in points:
        stored = sum(r is not None for _, r in p.keys)
        print(f"- `{p.path.name}` ({p.suite.config_hash()}): {stored} of {len(p.keys)} cells stored")
    print("\n## Cell keys\n\n| suite | cell | key |\n|---|---|---|")
    seen: set[str] = set()
    for p in points:
        for cell, rec in p.keys:
            if rec is None or cell.key in seen:
                continue
            seen.add(cell.key)
            what = " · ".join(x for x in (cell.attack, " → ".join(cell.pipeline), cell.detector, cell.probe) if x)
            print(f"| {p.suite.name} | {what} | `{cell.key}` |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--calibrate"]:  # print the calibrated CleanCLIP lr of one point's .cal.yaml
        rows, base, chosen = calibration(Path(sys.argv[2]), ResultStore(), default_registry())
        print(f"# unrepaired ref_cacc {pct(base)}; " + ", ".join(f"lr {lr:g}: {pct(r)}" for lr, r in rows),
              file=sys.stderr)
        print("" if chosen is None else f"{chosen:g}")
    else:
        main(sys.argv[1:])
