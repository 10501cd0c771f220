"""The leaderboard's numbers as data: CSV (long format, one row per number) and JSON (the report model).

CSV columns: page, table, row (the row's first cell), column (its header), metric, unit, direction, mean,
ci95_half (empty for one seed), n_seeds, values, seeds and cell_keys (``;``-separated) — every number with
the runs it comes from. JSON is :class:`bench_core.report.Report` as it is (tables, cells, provenance).
"""

from __future__ import annotations

import csv
from pathlib import Path

from bench_core.report import Combo, Report, Stat, column_header, format_cell

FIELDS = ("page", "table", "row", "column", "metric", "unit", "direction", "mean", "ci95_half", "n_seeds", "values",
          "seeds", "cell_keys")


def write_csv(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for page, _, table in report.tables():
            for row in table.rows:
                label = format_cell(row.cells[0]) if row.cells else ""
                for i, cell in enumerate(row.cells[1:], start=1):
                    header = column_header(table.columns[i]) if i < len(table.columns) else str(i)
                    stats = [cell] if isinstance(cell, Stat) else list(cell.parts) if isinstance(cell, Combo) else []
                    for stat in stats:
                        if not stat.values:
                            continue
                        info = stat.info
                        writer.writerow({
                            "page": page.name, "table": table.name, "row": label, "column": header,
                            "metric": stat.metric, "unit": info.unit, "direction": info.direction,
                            "mean": repr(stat.mean), "ci95_half": "" if stat.half is None else repr(stat.half),
                            "n_seeds": len(stat.values), "values": ";".join(map(repr, stat.values)),
                            "seeds": ";".join(map(str, stat.seeds)), "cell_keys": ";".join(stat.keys)})
    return path


def write_json(report: Report, path: Path) -> Path:
    from bench_core.store import strict_dumps

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(strict_dumps(report.model_dump(mode="json"), indent=1))
    return path


__all__ = ["write_csv", "write_json"]
