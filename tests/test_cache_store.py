"""Cache keys and artifacts (safetensors + JSON), and the SQLite results store."""

import pytest
import torch

from bench_core.cache import Cache, content_key
from bench_core.store import ResultRecord, ResultStore


def test_content_key_changes_with_every_input():
    base = content_key("model", "x", "1", {"a": 1}, ("u",))
    assert base == content_key("model", "x", "1", {"a": 1}, ("u",))
    assert len({base, content_key("model", "x", "2", {"a": 1}, ("u",)),
                content_key("model", "x", "1", {"a": 2}, ("u",)), content_key("model", "x", "1", {"a": 1}, ("v",)),
                content_key("attack", "x", "1", {"a": 1}, ("u",))}) == 5


def test_cache_roundtrip_is_safetensors_and_json(tmp_path):
    cache = Cache(tmp_path)
    key = content_key("t", "n", "1")
    assert cache.load(key) is None
    cache.save(key, {"w": torch.arange(6.0).view(2, 3)}, {"seconds": 1.5})
    tensors, meta = cache.load(key)
    assert torch.equal(tensors["w"], torch.arange(6.0).view(2, 3)) and meta == {"seconds": 1.5}
    files = sorted(p.suffix for p in tmp_path.rglob("*") if p.is_file())
    assert files == [".json", ".safetensors"]


def _record(key, status="ok", **kw):
    return ResultRecord(key=key, suite="s", model="m", attack="badnet", seed=0, status=status,
                        config_hash="h", **kw)


def test_store_put_get_done(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    store.put(_record("a", metrics={"asr": 0.9}, defenses=["decomp_rep"]))
    store.put(_record("b", status="error", error="boom"))
    assert store.get("a").metrics == {"asr": 0.9} and store.get("a").defenses == ["decomp_rep"]
    assert store.done("a") and not store.done("b") and not store.done("c")
    assert set(store.get_many(["a", "b", "c"])) == {"a", "b"}
    assert [r.key for r in store.all("s")] == ["a", "b"]
    # a retried cell overwrites its failed row
    store.put(_record("b", metrics={"asr": 0.1}))
    assert store.done("b")


def test_a_locked_store_is_busy_not_broken(tmp_path):
    """Another process's long write lock is reported as busy, never as a damaged file to move aside."""
    import sqlite3

    from bench_core.errors import BenchError
    from bench_core.store import ResultStore

    path = tmp_path / "results.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)  # a writer that holds the lock while the store opens
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(BenchError, match="busy") as err:
            ResultStore(path, busy_timeout_s=0.2)
        assert "move it aside" not in str(err.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    ResultStore(path, busy_timeout_s=0.2)  # free again: opens


def test_records_name_the_cpu_and_its_vector_extensions():
    from bench_core.environment import cpu_description, hardware_label

    info = cpu_description("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                           "flags\t\t: fpu avx2 fma avx512f amx_bf16 amx_tile avx512_bf16\n")
    assert info == {"cpu": "Intel(R) Xeon(R) Platinum 8480+",
                    "cpu_flags": ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]}
    assert hardware_label(info) == "Intel(R) Xeon(R) Platinum 8480+ (avx2, fma, avx512f, avx512_bf16, amx_bf16, amx_tile)"
    assert hardware_label({"device_name": "NVIDIA H100", **info}) == "NVIDIA H100"
