"""The one cache: content-addressed tensors (safetensors) + metadata (JSON) under ``$BDBENCH_HOME/cache``.

Keys come from :mod:`bench_core.keys` (every formula) through :func:`content_key` (the hash). Only safetensors
and JSON are read back: nothing in the cache is ever unpickled.

Integrity: each entry is written as a temporary file renamed into place (tensors first, the JSON last — the
JSON marks the entry whole), and the JSON carries the SHA-256 and byte count of the tensor file. A load checks
both; a truncated, garbled or bit-flipped entry (or one written before checksums existed) is logged, removed and
reported as a miss, so the caller recomputes it. A failed load is a cache miss, never a permanent failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load, save_file

FORMAT = 2
"""Entry format: 2 = metadata wrapped with the tensor file's checksum (1, unversioned, had none)."""


def bdbench_home() -> Path:
    """``$BDBENCH_HOME`` or ``~/.cache/bdbench``."""
    return Path(os.environ.get("BDBENCH_HOME") or Path.home() / ".cache" / "bdbench")


def stable_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace) used for every hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot hash {type(value).__name__} value {value!r}")


def content_key(kind: str, name: str, version: str, config: Any = None, upstream: tuple[str, ...] = ()) -> str:
    """Hex SHA-256 identifying an artifact by everything it was computed from."""
    payload = stable_json({"kind": kind, "name": name, "version": version, "config": config,
                           "upstream": list(upstream)})
    return hashlib.sha256(payload.encode()).hexdigest()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Cache:
    """Tensor artifacts by key: ``<root>/<key[:2]>/<key>.safetensors`` + ``.json``. Writes are atomic, loads
    verified."""

    def __init__(self, root: Path | str | None = None, log: Callable[[str], None] | None = None):
        self.root = Path(root) if root is not None else bdbench_home() / "cache"
        self.log = log or _stderr

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.safetensors", folder / f"{key}.json"

    def has(self, key: str) -> bool:
        """Both files are present (cheap; :meth:`load` is what verifies the content)."""
        tensors, meta = self._paths(key)
        return tensors.is_file() and meta.is_file()

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """(tensors, metadata), or None when absent or damaged (a damaged entry is logged and removed)."""
        if not self.has(key):
            return None
        tensor_path, meta_path = self._paths(key)
        try:
            entry = json.loads(meta_path.read_text())
            if not isinstance(entry, dict) or entry.get("format") != FORMAT:
                raise ValueError("written without a checksum (older format)")
            blob = tensor_path.read_bytes()
            if len(blob) != entry["bytes"]:
                raise ValueError(f"tensor file has {len(blob)} bytes, expected {entry['bytes']} (truncated?)")
            if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
                raise ValueError("tensor file checksum mismatch (garbled or bit-flipped)")
            return load(blob), entry["meta"]
        except Exception as exc:  # any damage, in either file, is a miss
            self.log(f"cache: entry {key[:12]} is damaged ({type(exc).__name__}: {exc}); discarding it, "
                     f"it will be recomputed")
            self.discard(key)
            return None

    def sha256(self, key: str) -> str | None:
        """The SHA-256 the entry's JSON records for its tensor file (its content identity), or None when absent
        or unreadable. Cheap: the tensor file is not read (:meth:`load` verifies it)."""
        if not self.has(key):
            return None
        try:
            entry = json.loads(self._paths(key)[1].read_text())
            return entry["sha256"] if isinstance(entry, dict) and isinstance(entry.get("sha256"), str) else None
        except (OSError, ValueError):
            return None

    def discard(self, key: str) -> None:
        for path in self._paths(key):
            path.unlink(missing_ok=True)

    def save(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
        """Store contiguous CPU copies of ``tensors`` and ``meta``; the JSON, with the tensor file's checksum,
        is written last (it marks the entry done)."""
        tensor_path, meta_path = self._paths(key)
        tensor_path.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        _atomic_write(tensor_path, lambda p: save_file(clean, str(p)))
        blob = tensor_path.read_bytes()
        entry = {"format": FORMAT, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
                 "meta": meta or {}}
        _atomic_write(meta_path, lambda p: Path(p).write_text(stable_json(entry)))


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, fsync it, then rename it into place: a reader (or a
    process killed mid-write) never sees a partial file under ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def state_dict_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict with shared storage broken (safetensors refuses aliased tensors)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
