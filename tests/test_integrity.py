"""Never a wrong number: diverged training and non-finite metrics are stored as errors, damaged cache entries are
detected and recomputed, results JSON is strict."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from bench_core import InferenceDefense, hookimpl
from bench_core.cache import Cache, content_key
from bench_core.cli import main
from bench_core.registry import build_registry, plugin_manager
from bench_core.runner import Runner
from bench_core.store import ResultRecord, ResultStore, strict_dumps
from bench_core.suite import Suite

QUICK = yaml.safe_load(open("bench_core/suites/quick.yaml"))


def _suite(**changes) -> Suite:
    return Suite.model_validate({**QUICK, **changes})


def test_a_diverging_fine_tune_stores_errors_never_ok():
    runner = Runner(_suite(finetune={"epochs": 2, "lr": 1e7, "batch_size": 50}))
    counts = runner.run()
    records = runner.store.get_many(c.key for c in runner.all_cells())
    assert counts["failed"] == len(runner.all_cells()) == len(records) and counts["computed"] == 0
    assert all(r.status == "error" and not r.metrics for r in records.values())
    assert all("TrainingDiverged" in r.error and "at step" in r.error for r in records.values())
    # nothing the diverged runs made was cached: only the clean model, the attack states and their galleries
    kinds = {u.key: u.kind for u in runner.plan.units}
    cached = {p.stem for p in runner.cache.root.rglob("*.safetensors")}
    assert {kinds[k] for k in cached} <= {"pretrain", "attack", "gallery"}


class _NanMetrics(InferenceDefense):
    name = "nan_logits"
    summary = "test double: logits that are all NaN"

    def wrap(self, classifier, ctx):
        class Wrapped:
            model, class_weights = classifier.model, classifier.class_weights

            def logits(self, images):
                return torch.full((len(images), len(classifier.class_weights)), float("nan"))

            def image_embeddings(self, images):
                return classifier.image_embeddings(images)

        return Wrapped()


class _NanPlugin:
    @hookimpl
    def bdbench_register_defenses(self):
        return [_NanMetrics]


def test_a_cell_with_non_finite_metrics_is_an_error_not_ok():
    registry = build_registry(plugin_manager(extra_plugins=(_NanPlugin(),)))
    runner = Runner(_suite(attacks=["blended"], pipelines=[[], ["nan_logits"]], detectors=[], probes=[]),
                    registry=registry)
    counts = runner.run()
    records = runner.store.get_many(c.key for c in runner.all_cells())
    bad = [r for r in records.values() if r.defenses == ["nan_logits"]]
    assert len(bad) == 2 and counts["failed"] == 2
    assert all(r.status == "error" and "not finite" in r.error and not r.metrics for r in bad)
    assert all(r.status == "ok" for r in records.values() if not r.defenses)


def test_a_record_cannot_hold_a_non_finite_number():
    with pytest.raises(ValueError, match="not finite"):
        ResultRecord(key="k", suite="s", model="m", attack="none", seed=0, status="ok", config_hash="h",
                     metrics={"cacc": float("nan")})


def test_results_json_is_strict(capsys):
    ResultStore().put(ResultRecord(key="k", suite="s", model="m", attack="none", seed=0, status="ok",
                                   config_hash="h", metrics={"cacc": 0.5},
                                   payload={"tables": {"t": [{"x": float("nan"), "y": float("inf")}]}}))
    assert main(["results", "--json"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text and "Infinity" not in text
    rows = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))
    assert rows[0]["payload"]["tables"]["t"] == [{"x": None, "y": None}]
    with pytest.raises(ValueError):
        json.dumps(math.nan, allow_nan=False)
    assert strict_dumps({"a": [math.nan, 1.0]}) == '{"a": [null, 1.0]}'


@pytest.mark.parametrize("damage", ["flip_bit", "truncate", "garble_json", "no_checksum"])
def test_a_damaged_cache_entry_is_detected_and_is_a_miss(tmp_path, damage):
    logged = []
    cache = Cache(tmp_path, log=logged.append)
    key = content_key("t", "n", "1")
    cache.save(key, {"w": torch.arange(64.0)}, {"seconds": 1.0})
    tensors, meta = tmp_path / key[:2] / f"{key}.safetensors", tmp_path / key[:2] / f"{key}.json"
    blob = bytearray(tensors.read_bytes())
    if damage == "flip_bit":
        blob[-5] ^= 0x01  # one bit of one float's payload: safetensors alone would load it silently
        tensors.write_bytes(bytes(blob))
    elif damage == "truncate":
        tensors.write_bytes(bytes(blob[: len(blob) // 2]))
    elif damage == "garble_json":
        meta.write_text(meta.read_text()[:-7])
    else:
        meta.write_text(json.dumps({"seconds": 1.0}))  # an entry from before checksums existed
    assert cache.load(key) is None
    assert len(logged) == 1 and "damaged" in logged[0] and key[:12] in logged[0]
    assert not tensors.exists() and not meta.exists()  # discarded, so it is recomputed, never retried forever


def test_a_damaged_model_in_the_cache_is_recomputed_and_gives_the_same_numbers():
    suite = _suite(attacks=["blended"], pipelines=[[]], detectors=[], probes=[])
    first = Runner(suite)
    first.run()
    reference = {k: r.metrics for k, r in first.store.get_many(c.key for c in first.all_cells()).items()}
    finetunes = [u for u in first.plan.units if u.kind == "finetune"]
    flipped = first.cache.root / finetunes[0].key[:2] / f"{finetunes[0].key}.safetensors"
    blob = bytearray(flipped.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    flipped.write_bytes(bytes(blob))
    truncated = first.cache.root / finetunes[1].key[:2] / f"{finetunes[1].key}.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    for suffix in ("", "-wal", "-shm"):  # the cells must be computed again, from the damaged cache
        ResultStore().path.with_name("results.sqlite" + suffix).unlink(missing_ok=True)
    logged = []
    second = Runner(suite, log=logged.append)
    assert second.run() == {"computed": 2, "skipped": 0, "failed": 0}
    assert sum("damaged" in line for line in logged) == 2
    again = {k: r.metrics for k, r in second.store.get_many(c.key for c in second.all_cells()).items()}
    assert again == reference
