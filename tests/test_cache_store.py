"""Cache keys and artifacts (safetensors + JSON), and the SQLite results store."""

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
