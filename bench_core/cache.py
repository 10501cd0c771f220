"""The one cache: content-addressed tensors (safetensors) + metadata (JSON) under ``$BDBENCH_HOME/cache``.

A key is the SHA-256 of (kind, name, version, config, upstream keys): change any input — a plugin's version,
a config value, the model it was derived from — and the key changes, so nothing stale is ever reused. Only
safetensors and JSON are read back: nothing in the cache is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


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


class Cache:
    """Tensor artifacts by key: ``<root>/<key[:2]>/<key>.safetensors`` + ``.json``. Writes are atomic."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else bdbench_home() / "cache"

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.safetensors", folder / f"{key}.json"

    def has(self, key: str) -> bool:
        tensors, meta = self._paths(key)
        return tensors.is_file() and meta.is_file()

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """(tensors, metadata) or None when absent."""
        if not self.has(key):
            return None
        tensors, meta = self._paths(key)
        return load_file(str(tensors)), json.loads(meta.read_text())

    def save(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
        """Store contiguous CPU copies of ``tensors`` and ``meta``; the JSON is written last (it marks done)."""
        tensor_path, meta_path = self._paths(key)
        tensor_path.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        _atomic_write(tensor_path, lambda p: save_file(clean, str(p)))
        _atomic_write(meta_path, lambda p: Path(p).write_text(stable_json(meta or {})))


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def state_dict_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict with shared storage broken (safetensors refuses aliased tensors)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
