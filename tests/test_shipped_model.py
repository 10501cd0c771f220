"""Shipped clean models: imported only when the key matches and the checksum holds; otherwise pretrained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench_core import shipped
from bench_core.cache import Cache, bdbench_home
from bench_core.errors import BenchError
from bench_core.keys import clean_model_key
from bench_core.suite import load_suite
from bench_core.workspace import Workspace

SUITE = str(Path(__file__).parent / "suites" / "scene_tiny.yaml")


@pytest.fixture
def exported(tmp_path, monkeypatch):
    """The tiny suite's clean model, pretrained once and exported into a private asset folder."""
    suite = load_suite(SUITE)
    key = clean_model_key(suite.model, suite.data, suite.pretrain)
    Workspace(suite, log=lambda m: None).clean_model()
    folder = tmp_path / "assets"
    shipped.export_shipped(Cache(), key, "scene_tiny", suite.name, folder)
    monkeypatch.setattr(shipped, "ASSET_DIR", folder)
    monkeypatch.setattr("bench_core.workspace.import_shipped",
                        lambda cache, k, log: shipped.import_shipped(cache, k, log, folder))
    reference, _ = Cache().load(key)
    return suite, key, folder, reference


def _fresh_home(tmp_path, monkeypatch, name: str) -> None:
    monkeypatch.setenv("BDBENCH_HOME", str(tmp_path / name))


def test_export_then_import_gives_the_same_model_without_training(tmp_path, monkeypatch, exported):
    suite, key, folder, reference = exported
    manifest = json.loads((folder / "scene_tiny.json").read_text())
    assert manifest["key"] == key and len(manifest["sha256"]) == 64
    _fresh_home(tmp_path, monkeypatch, "fresh")
    logs: list[str] = []
    model = Workspace(suite, log=logs.append).clean_model()
    assert any("imported from the shipped" in m for m in logs) and not any("pretraining" in m for m in logs)
    state = model.clip.state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_a_damaged_shipped_file_is_never_used(tmp_path, monkeypatch, exported):
    suite, key, folder, reference = exported
    path = folder / "scene_tiny.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF  # one flipped bit in the weights: same size, other checksum
    path.write_bytes(bytes(blob))
    _fresh_home(tmp_path, monkeypatch, "fresh")
    logs: list[str] = []
    Workspace(suite, log=logs.append).clean_model()
    assert any("not usable" in m and "SHA-256" in m for m in logs)
    assert any("pretraining the clean model" in m for m in logs)
    entry = Cache().load(key)
    assert entry is not None and "imported_from" not in entry[1]


def test_a_manifest_for_another_key_is_ignored(tmp_path, monkeypatch, exported):
    suite, key, folder, _ = exported
    manifest = json.loads((folder / "scene_tiny.json").read_text())
    manifest["key"] = "0" * 64
    (folder / "scene_tiny.json").write_text(json.dumps(manifest))
    _fresh_home(tmp_path, monkeypatch, "fresh")
    logs: list[str] = []
    Workspace(suite, log=logs.append).clean_model()
    assert any("pretraining the clean model" in m for m in logs)


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", ""])
def test_export_names_stay_inside_the_asset_folder(tmp_path, name):
    with pytest.raises(BenchError, match="not a plain file name"):
        shipped.export_shipped(Cache(), "0" * 64, name, "x", tmp_path)


def test_the_shipped_scene_model_is_the_scene_suites_clean_model():
    """The committed checkpoint's key is the clean-model key of the suites that use it, so a change to the world,
    the model or the pretraining cannot silently keep an old file; its bytes match its manifest."""
    import hashlib

    found = shipped.manifests()
    for name in ("scene",):
        suite = load_suite(name)
        key = clean_model_key(suite.model, suite.data, suite.pretrain)
        assert key in found, f"no shipped model for suite {name}'s clean model {key[:12]}"
        path, manifest = found[key]
        blob = path.read_bytes()
        assert len(blob) == manifest["bytes"] and hashlib.sha256(blob).hexdigest() == manifest["sha256"]
        assert len(blob) <= 50 * 2**20
