"""The results store: one SQLite row per evaluated cell under ``$BDBENCH_HOME/results.sqlite``.

A row is written the moment its cell finishes (or fails), in its own transaction, so an interrupted or
partly failing run keeps everything already computed. Rows are keyed by the cell's content key, which covers
suite settings, plugin names, versions and configs, and the seed; the leaderboard reads rows by key.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench_core.cache import bdbench_home

Status = Literal["ok", "error"]


class ResultRecord(BaseModel):
    """One evaluated cell. ``attack`` is "none" for the clean model; ``defenses`` lists the pipeline in order."""

    model_config = ConfigDict(extra="forbid")

    key: str
    suite: str
    model: str
    attack: str
    defenses: list[str] = Field(default_factory=list)
    detector: str | None = None
    probe: str | None = None
    seed: int
    status: Status
    metrics: dict[str, float] = Field(default_factory=dict)
    cost: dict[str, float] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)
    config_hash: str
    versions: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    created_at: float = Field(default_factory=time.time)


_COLUMNS = ("key", "suite", "model", "attack", "defenses", "detector", "probe", "seed", "status", "metrics",
            "cost", "payload", "config_hash", "versions", "error", "created_at")
_JSON = {"defenses", "metrics", "cost", "payload", "versions"}


class ResultStore:
    """SQLite-backed store of :class:`ResultRecord`; safe to open from several processes."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else bdbench_home() / "results.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, suite TEXT, model TEXT, attack TEXT, "
                "defenses TEXT, detector TEXT, probe TEXT, seed INTEGER, status TEXT, metrics TEXT, cost TEXT, "
                "payload TEXT, config_hash TEXT, versions TEXT, error TEXT, created_at REAL)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def put(self, record: ResultRecord) -> None:
        row = record.model_dump()
        values = [json.dumps(row[c]) if c in _JSON else row[c] for c in _COLUMNS]
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO results ({', '.join(_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)

    def get(self, key: str) -> ResultRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else _record(row)

    def get_many(self, keys: Iterable[str]) -> dict[str, ResultRecord]:
        keys = list(keys)
        out: dict[str, ResultRecord] = {}
        with self._connect() as db:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                rows = db.execute(f"SELECT * FROM results WHERE key IN ({', '.join('?' * len(chunk))})", chunk)
                out.update({r["key"]: _record(r) for r in rows})
        return out

    def done(self, key: str) -> bool:
        """True when the cell has an ``ok`` row (failed cells are retried on the next run)."""
        with self._connect() as db:
            row = db.execute("SELECT status FROM results WHERE key = ?", (key,)).fetchone()
        return row is not None and row["status"] == "ok"

    def all(self, suite: str | None = None) -> list[ResultRecord]:
        query, args = "SELECT * FROM results", ()
        if suite is not None:
            query, args = query + " WHERE suite = ?", (suite,)
        with self._connect() as db:
            return [_record(r) for r in db.execute(query + " ORDER BY created_at", args)]


def _record(row: sqlite3.Row) -> ResultRecord:
    data = {c: (json.loads(row[c]) if c in _JSON and row[c] is not None else row[c]) for c in _COLUMNS}
    return ResultRecord(**data)
