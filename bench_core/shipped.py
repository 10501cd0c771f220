"""Shipped clean models: a long pretraining paid once, committed with the package, imported into the cache.

A shipped model is two files in ``bench_core/assets/clean/``: ``<name>.safetensors`` (the clean CLIP's state
dict, as the cache stores it) and ``<name>.json`` (its manifest: the clean-model key it was trained under, the
SHA-256 and byte count of the tensor file, the suite that made it and its training stats). When a workspace
needs a clean model that is not in the cache, it looks for a manifest with that exact key; the tensor file is
imported only when its size and checksum match the manifest, and then it is stored in the cache like a model
trained here. Anything else — no manifest with the key, a damaged or substituted file, an unreadable manifest —
means the model is pretrained, never that a doubtful file is used.

``bdbench pretrain --suite S --export`` writes the pair for S's clean model.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable

from safetensors.torch import load, save

from bench_core.cache import Cache
from bench_core.errors import BenchError

ASSET_DIR = Path(__file__).parent / "assets" / "clean"
MANIFEST_VERSION = 1


def manifests(folder: Path = ASSET_DIR) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Clean-model key -> (tensor file, manifest), for every readable manifest in ``folder``."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            manifest = json.loads(path.read_text())
            key = manifest["key"]
            if manifest.get("version") != MANIFEST_VERSION or not isinstance(key, str):
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found[key] = (path.with_suffix(".safetensors"), manifest)
    return found


def import_shipped(cache: Cache, key: str, log: Callable[[str], None], folder: Path = ASSET_DIR) -> bool:
    """Store the shipped model for ``key`` in ``cache`` after checking it; False when there is none usable."""
    entry = manifests(folder).get(key)
    if entry is None:
        return False
    tensor_path, manifest = entry
    try:
        blob = tensor_path.read_bytes()
        if len(blob) != manifest["bytes"]:
            raise ValueError(f"{len(blob)} bytes, the manifest says {manifest['bytes']}")
        digest = hashlib.sha256(blob).hexdigest()
        if digest != manifest["sha256"]:
            raise ValueError(f"SHA-256 {digest[:12]}..., the manifest says {str(manifest['sha256'])[:12]}...")
        tensors = load(blob)
    except Exception as exc:  # any damage: pretrain instead
        log(f"shipped clean model {tensor_path.name} is not usable ({type(exc).__name__}: {exc}); "
            f"pretraining instead")
        return False
    cache.save(key, tensors, {"stats": manifest.get("stats", {}), "imported_from": tensor_path.name,
                              "sha256": manifest["sha256"]})
    log(f"clean model imported from the shipped {tensor_path.name} (key {key[:12]}, checksum verified)")
    return True


def export_shipped(cache: Cache, key: str, name: str, suite_name: str, folder: Path = ASSET_DIR) -> Path:
    """Write the cached clean model ``key`` as ``<folder>/<name>.safetensors`` + its manifest."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name) or ".." in name:
        raise BenchError(f"export name {name!r} is not a plain file name; allowed: letters, digits, '_', '-', '.'")
    hit = cache.load(key)
    if hit is None:
        raise BenchError(f"clean model {key[:12]} is not in the cache; run bdbench pretrain first")
    tensors, meta = hit
    blob = save(tensors)
    folder.mkdir(parents=True, exist_ok=True)
    tensor_path = folder / f"{name}.safetensors"
    tensor_path.write_bytes(blob)
    manifest = {"version": MANIFEST_VERSION, "key": key, "suite": suite_name, "bytes": len(blob),
                "sha256": hashlib.sha256(blob).hexdigest(), "stats": meta.get("stats", {})}
    tensor_path.with_suffix(".json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return tensor_path
