"""``bdbench`` command line: list, plan, run, results, leaderboard, stress.

User mistakes (unknown plugin, malformed suite, invalid config) print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench_core.errors import BenchError

EXIT_USAGE = 2


def _cmd_list(args: argparse.Namespace) -> int:
    from bench_core.registry import default_registry
    from bench_core.suite import shipped_suites

    registry = default_registry()
    rows = []
    for kind in ("attack", "defense", "detector", "probe"):
        reg = registry.of(kind)
        for name in reg.names():
            cls = reg.get(name)
            rows.append({"kind": kind, "name": name, "version": cls.version,
                         "stage": getattr(cls, "stage", None), "locality": getattr(cls, "locality", None),
                         "threat_model": cls.threat_model.tag, "oracle": cls.threat_model.oracle,
                         "summary": cls.summary, "source": reg.source(name)})
    if args.json:
        print(json.dumps({"plugins": rows, "suites": shipped_suites()}, indent=2))
        return 0
    from tabulate import tabulate

    table = [[r["kind"], r["name"], r["version"], r["stage"] or r["locality"] or "", r["source"], r["summary"]]
             for r in rows]
    print(tabulate(table, headers=["kind", "name", "version", "stage/type", "package", "summary"]))
    print(f"\nsuites: {', '.join(shipped_suites())}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from bench_core.runner import Runner
    from bench_core.suite import load_suite

    runner = Runner(load_suite(args.suite))
    plan = runner.plan
    units, stored = runner.pending()
    todo = {u.id for u in units}
    cached = {u.id for u in plan.units if not u.is_cell and u.id not in todo}
    counts = {**plan.counts(), "stored": len(stored), "to_compute": sum(u.is_cell for u in units),
              "trainings_to_run": sum(u.kind in ("pretrain", "finetune", "post_train") for u in units)}
    if args.json:
        out = {"suite": plan.suite.name, "config_hash": plan.config_hash, "counts": counts,
               "units": [{"id": u.id, "kind": u.kind, "key": u.key, "seed": u.seed, "deps": list(u.deps),
                          "describe": u.describe(),
                          "state": "stored" if u.key in stored or u.id in cached else "pending",
                          "cell": u.cell.model_dump(include={"kind", "attack", "pipeline", "detector", "probe"})
                          if u.cell else None} for u in plan.units]}
        print(json.dumps(out, indent=1))
        return 0
    from tabulate import tabulate

    rows = []
    for kind in ("pretrain", "attack", "gallery", "finetune", "post_train", "eval", "detector", "probe"):
        of_kind = [u for u in plan.units if u.kind == kind]
        if of_kind:
            rows.append([kind, len(of_kind), sum(u.id in todo for u in of_kind)])
    print(f"suite {plan.suite.name} ({plan.config_hash}): {counts['units']} units, {counts['trainings']} trainings, "
          f"{counts['cells']} cells ({counts['stored']} stored)")
    print(tabulate(rows, headers=["unit kind", "units", "to compute"]))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from bench_core.runner import Runner
    from bench_core.suite import load_suite

    _warn_jobs(args)
    if args.leaderboard:
        _output_folder(args.leaderboard)
    suite = load_suite(args.suite)
    runner = Runner(suite, executor=args.executor, jobs=args.jobs, address=args.address)
    started = time.perf_counter()
    cells = runner.all_cells()
    print(f"suite {suite.name} ({suite.config_hash()}): {len(cells)} cells on {runner.device}, "
          f"executor {args.executor}", file=sys.stderr)
    counts = runner.run()
    print(f"done in {time.perf_counter() - started:.1f}s: {counts['computed']} computed, "
          f"{counts['skipped']} already stored, {counts['failed']} failed", file=sys.stderr)
    if args.leaderboard:
        from bench_core.leaderboard import write_leaderboard

        # in-process: reuses the run's plan instead of expanding the suite again
        for path in write_leaderboard(suite, args.leaderboard, store=runner.store, plan=runner.plan):
            print(path)
    return 1 if counts["failed"] else 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    """Pretrain the suite's clean model (resuming an interrupted pretraining) and optionally export it."""
    import torch

    from bench_core.keys import clean_model_key
    from bench_core.suite import load_suite
    from bench_core.validate import check_home
    from bench_core.workspace import Workspace

    suite = load_suite(args.suite)
    if suite.pretrain is None:
        raise BenchError(f"suite {suite.name} has pretrain: null (its clean model is model.pretrained); "
                         f"nothing to pretrain")
    check_home()
    if suite.resources.torch_threads:
        torch.set_num_threads(suite.resources.torch_threads)
    started = time.perf_counter()
    workspace = Workspace(suite)
    workspace.clean_model()
    key = clean_model_key(suite.model, suite.data, suite.pretrain)
    print(f"clean model {key} ready in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if args.export:
        from bench_core.shipped import export_shipped

        print(export_shipped(workspace.cache, key, args.export, suite.name))
    return 0


def _warn_jobs(args: argparse.Namespace) -> None:
    """--jobs that the executor ignores, or more local workers than cores: a warning, not silence."""
    if args.jobs is None:
        return
    if args.jobs < 1:
        return  # refused by the runner, with the allowed range
    if args.executor == "serial":
        print(f"bdbench: warning: --jobs {args.jobs} is ignored by the serial executor (one unit at a time in this "
              f"process); use --executor processes or ray", file=sys.stderr)
        return
    from bench_core.executors import cpu_count

    if args.executor == "processes" and args.jobs > cpu_count():
        print(f"bdbench: warning: --jobs {args.jobs} is more workers than this machine's {cpu_count()} cores: they "
              f"will slow each other down", file=sys.stderr)


def _cmd_results(args: argparse.Namespace) -> int:
    from bench_core.store import ResultStore, strict_dumps
    from bench_core.validate import check_home

    check_home()
    store = ResultStore()
    if args.suite:
        from bench_core.plan import expand
        from bench_core.registry import default_registry
        from bench_core.suite import load_suite

        # every cell of the suite's grid, whichever suite computed it
        plan = expand(load_suite(args.suite), default_registry())
        found = store.get_many(c.key for c in plan.cells)
        records = [found[c.key] for c in plan.cells if c.key in found]
    else:
        records = store.all()
    if args.json:
        print(strict_dumps([r.model_dump(mode="json") for r in records], indent=2))
        return 0
    from tabulate import tabulate

    rows = [[r.suite, r.attack, " -> ".join(r.defenses) or "-", r.detector or "-", r.probe or "-", r.seed,
             r.status, ", ".join(f"{k}={v:.3f}" for k, v in sorted(r.metrics.items()))] for r in records]
    print(tabulate(rows, headers=["suite", "attack", "defenses", "detector", "probe", "seed", "status", "metrics"]))
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from bench_core.leaderboard import write_leaderboard
    from bench_core.suite import load_suite

    formats, out = _formats(args.format), _output_folder(args.out)
    suite = load_suite(args.suite)
    pages = set(args.pages.split(",")) if args.pages else None
    written = write_leaderboard(suite, out, pages=pages, formats=formats)
    for path in written:
        print(path)
    return 0


def _formats(text: str) -> list[str]:
    """``markdown,html`` -> the formats; ``all`` -> every format."""
    from bench_core.leaderboard import FORMATS

    formats = list(FORMATS) if text == "all" else [f.strip() for f in text.split(",") if f.strip()]
    if not formats:
        raise BenchError(f"--format {text!r} names no format; allowed: {', '.join(FORMATS)} (comma-separated) or all")
    return formats


def _output_folder(out: str) -> str:
    from pathlib import Path

    if Path(out).exists() and not Path(out).is_dir():
        raise BenchError(f"--out {out!r} is a file; allowed: a folder (created when missing)")
    return out


def _cmd_stress(args: argparse.Namespace) -> int:
    from bench_core.leaderboard import write_leaderboard
    from bench_core.registry import default_registry
    from bench_core.runner import Runner
    from bench_core.stress import applicable_attacks, stress_suite
    from bench_core.suite import load_suite

    kind, name = ("defense", args.defense) if args.defense else ("detector", args.detector)
    config = None
    if args.config is not None:
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as exc:
            raise BenchError(f"--config {args.config!r} is not JSON ({exc.msg} at position {exc.pos}); allowed: a "
                             f"JSON object of the plugin's settings, e.g. '{{\"patch_size\": 4}}'") from None
        if not isinstance(config, dict):
            raise BenchError(f"--config {args.config!r} is a JSON {type(config).__name__}; allowed: a JSON object "
                             f"of the plugin's settings, e.g. '{{\"patch_size\": 4}}'")
    _warn_jobs(args)
    out = _output_folder(args.out) if args.out else None
    registry = default_registry()
    suite = stress_suite(load_suite(args.suite), registry, kind, name, config)
    print(f"stress-testing {kind} {name} with {', '.join(applicable_attacks(registry, kind, name))} on "
          f"{args.suite}'s settings, seeds {suite.seeds}", file=sys.stderr)
    runner = Runner(suite, executor=args.executor, jobs=args.jobs, address=args.address)
    counts = runner.run()
    out = out or f"leaderboards/stress/{name}"
    for path in write_leaderboard(suite, out, store=runner.store, plan=runner.plan, pages={"adaptive"}, focus=name):
        print(path)
    return 1 if counts["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bdbench", description="Backdoor attacks and defenses on CLIP.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered plugins and shipped suites")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("plan", help="show a suite's work units, their dependencies and what is already stored")
    p.add_argument("--suite", required=True, help="shipped suite name or path to a YAML file")
    p.add_argument("--json", action="store_true", help="machine-readable output (units with id, kind, deps)")
    p.set_defaults(func=_cmd_plan)
    p = sub.add_parser("run", help="run a suite (skips cells already stored)")
    p.add_argument("--suite", required=True, help="shipped suite name or path to a YAML file")
    p.add_argument("--executor", default="serial", choices=["serial", "processes", "ray"],
                   help="where units run: this process (default), local worker processes, or Ray")
    p.add_argument("--jobs", type=int, default=None,
                   help="processes: worker count (default: one per GPU, else one per core); ray: CPUs of a "
                        "local Ray")
    p.add_argument("--address", default=None, help="ray: the cluster to join (auto or HOST:PORT); default: a "
                                                   "local Ray")
    p.add_argument("--leaderboard", metavar="OUT", default=None,
                   help="then write the leaderboard to this folder (as `bdbench leaderboard --out OUT`)")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("pretrain", help="pretrain a suite's clean model (resumes an interrupted one) and "
                                        "optionally export it as a shipped asset")
    p.add_argument("--suite", required=True, help="shipped suite name or path to a YAML file")
    p.add_argument("--export", metavar="NAME", default=None,
                   help="then write bench_core/assets/clean/NAME.safetensors and NAME.json (key, SHA-256)")
    p.set_defaults(func=_cmd_pretrain)
    p = sub.add_parser("results", help="print stored results")
    p.add_argument("--json", action="store_true", help="a JSON list of records")
    p.add_argument("--suite", default=None, help="every cell of this suite's grid, whichever suite computed it")
    p.set_defaults(func=_cmd_results)
    p = sub.add_parser("leaderboard", help="write leaderboard markdown from stored results")
    p.add_argument("--suite", required=True, help="shipped suite name or path to a YAML file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--pages", default=None, help="comma-separated pages to write (e.g. adaptive); default: all")
    p.add_argument("--format", default="markdown",
                   help="comma-separated: markdown, html (one self-contained index.html), latex (booktabs tables "
                        "under latex/), csv (numbers.csv), json (report.json); or all (default: markdown)")
    p.set_defaults(func=_cmd_leaderboard)
    p = sub.add_parser("stress", help="run every adaptive attack for one defense or detector and write its "
                                      "adaptive report")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--defense", help="a registered defense (built-in or third-party)")
    target.add_argument("--detector", help="a registered detector (built-in or third-party)")
    p.add_argument("--config", default=None, help="the plugin's config as JSON (default: the base suite's "
                                                   "entry, else the plugin's defaults)")
    p.add_argument("--suite", default="default", help="base suite: shared settings and seeds (default: default)")
    p.add_argument("--out", default=None, help="output folder (default: leaderboards/stress/NAME)")
    p.add_argument("--executor", default="serial", choices=["serial", "processes", "ray"])
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--address", default=None)
    p.set_defaults(func=_cmd_stress)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"bdbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bdbench: interrupted; every finished cell is stored and will be skipped next time",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
