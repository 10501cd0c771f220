"""The results store: one SQLite row per evaluated cell under ``$BDBENCH_HOME/results.sqlite``.

A row is written the moment its cell finishes (or fails), in its own transaction, so an interrupted or partly
failing run keeps everything already computed. Rows are keyed by the cell's content key (:mod:`bench_core.keys`),
which covers the suite's shared settings, every plugin's name, version and config, and the seed. Each record
holds its full cell spec (every plugin config), a schema version and the environment it was computed in.

The database runs in WAL mode, each operation on its own connection, closed after it; several processes may
read and write it at once. Only the driver of a run writes (workers hand their records back to it). An ``ok``
row is never overwritten by an error: a failure reported by a second run cannot erase a result. Every number
stored is finite: metrics and costs are checked before a record can be built, and payloads are written as
strict JSON with non-finite floats as ``null``.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bench_core.cache import bdbench_home
from bench_core.errors import BenchError
from bench_core.faults import crash_point

Status = Literal["ok", "error"]
SCHEMA_VERSION = 2
"""2: records carry ``spec``, ``schema_version`` and ``env`` (1 had names and versions only)."""


class ResultRecord(BaseModel):
    """One evaluated cell. ``attack`` is "none" for the clean model; ``defenses`` lists the pipeline in order.
    ``attack``, ``defenses``, ``detector`` and ``probe`` hold the suite's labels (the plugin name unless one
    suite runs several configurations of it); ``spec`` holds each one's full plugin spec."""

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
    spec: dict[str, Any] = Field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    env: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metrics", "cost")
    @classmethod
    def _finite(cls, values: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"not finite: {bad}")
        return values


_COLUMNS = ("key", "suite", "model", "attack", "defenses", "detector", "probe", "seed", "status", "metrics",
            "cost", "payload", "config_hash", "versions", "error", "created_at", "spec", "schema_version", "env")
_JSON = {"defenses", "metrics", "cost", "payload", "versions", "spec", "env"}
_ADDED = {"spec": "TEXT", "schema_version": "INTEGER", "env": "TEXT"}  # columns schema 2 added to schema 1


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so it serialises as strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def strict_dumps(value: Any, **kwargs) -> str:
    """JSON that any strict parser reads: NaN and infinities become null, never bare ``NaN``."""
    return json.dumps(finite_json(value), allow_nan=False, **kwargs)


class ResultStore:
    """SQLite-backed store of :class:`ResultRecord`; safe to open from several processes."""

    def __init__(self, path: Path | str | None = None, busy_timeout_s: float = 60.0):
        self.path = Path(path) if path is not None else bdbench_home() / "results.sqlite"
        self.busy_timeout_s = busy_timeout_s  # how long a call waits for another process's write lock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, suite TEXT, model TEXT, attack TEXT, "
                    "defenses TEXT, detector TEXT, probe TEXT, seed INTEGER, status TEXT, metrics TEXT, cost TEXT, "
                    "payload TEXT, config_hash TEXT, versions TEXT, error TEXT, created_at REAL)")
                present = {row[1] for row in db.execute("PRAGMA table_info(results)")}
                for column, kind in _ADDED.items():
                    if column not in present:
                        db.execute(f"ALTER TABLE results ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise BenchError(f"results database {str(self.path)!r} is busy: another process has held its "
                                 f"write lock for over {self.busy_timeout_s:g} s ({exc}); the file is fine, retry when that run "
                                 f"has finished its write") from None
            raise BenchError(f"results database {str(self.path)!r} is unreadable ({exc}); move it aside to start "
                             f"a new one") from None
        except sqlite3.DatabaseError as exc:
            raise BenchError(f"results database {str(self.path)!r} is unreadable ({exc}); move it aside to start "
                             f"a new one") from None
        except OSError as exc:
            raise BenchError(f"cannot create the results database {str(self.path)!r}: {exc.strerror}") from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction: committed on success, rolled back on error, always closed."""
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    def put(self, record: ResultRecord) -> None:
        """Insert or replace the row of ``record.key`` — except that an error never replaces an ``ok`` row."""
        row = record.model_dump()
        values = [strict_dumps(row[c]) if c in _JSON else row[c] for c in _COLUMNS]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "key")
        with self._connect() as db:
            db.execute(f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
                       f"ON CONFLICT(key) DO UPDATE SET {updates} "
                       f"WHERE results.status != 'ok' OR excluded.status = 'ok'", values)
            crash_point("store")

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
        return key in self.done_keys([key])

    def done_keys(self, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` that have an ``ok`` row."""
        keys = list(keys)
        out: set[str] = set()
        with self._connect() as db:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                rows = db.execute(f"SELECT key FROM results WHERE status = 'ok' AND key IN "
                                  f"({', '.join('?' * len(chunk))})", chunk)
                out.update(r["key"] for r in rows)
        return out

    def all(self, suite: str | None = None) -> list[ResultRecord]:
        """Every row, or the rows a suite of that name computed (see ``bdbench results --suite`` for a grid's
        cells whichever suite computed them)."""
        query, args = "SELECT * FROM results", ()
        if suite is not None:
            query, args = query + " WHERE suite = ?", (suite,)
        with self._connect() as db:
            return [_record(r) for r in db.execute(query + " ORDER BY created_at", args)]

    def integrity(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer ("ok" when the file is sound)."""
        with self._connect() as db:
            return db.execute("PRAGMA integrity_check").fetchone()[0]


def _record(row: sqlite3.Row) -> ResultRecord:
    data = {c: (json.loads(row[c]) if c in _JSON and row[c] is not None else row[c]) for c in _COLUMNS}
    data = {k: v for k, v in data.items() if v is not None or k in ("detector", "probe", "error")}
    data.setdefault("schema_version", 1)
    return ResultRecord(**data)
