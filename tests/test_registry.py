"""Registry: entry points, duplicates, wrong bases, did-you-mean (STYLE: lm-eval / timm registries)."""

import pytest

from bench_core import Attack, Probe, hookimpl
from bench_core.errors import BenchError
from bench_core.registry import RegistryError, build_registry, default_registry, plugin_manager


def test_builtin_plugins_arrive_through_entry_points():
    reg = default_registry()
    assert {"badnet", "blended"} <= set(reg.attacks.names())
    assert {"decomp_rep", "decomp_rep.oracle"} <= set(reg.defenses.names())
    assert {"strip", "decomp_det"} <= set(reg.detectors.names())
    assert "mean_ablation" in reg.probes
    assert reg.attacks.source("badnet").startswith("bdbench-attacks")


def test_core_never_imports_a_plugin_by_name():
    import pathlib

    import bench_core

    root = pathlib.Path(bench_core.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "bdbench_attacks" not in text and "bdbench_decomp" not in text, path


def test_unknown_name_suggests_nearest():
    with pytest.raises(BenchError, match=r"unknown attack 'badnett'; did you mean 'badnet'\?"):
        default_registry().attacks.get("badnett")


def test_wildcards():
    names = default_registry().defenses.names("decomp_rep*")
    assert {"decomp_rep", "decomp_rep.oracle"} <= set(names) and all(n.startswith("decomp_rep") for n in names)


class _Dup:
    class BadNetAgain(Attack):
        name = "badnet"
        locality = "local"

        def apply_trigger(self, images, ctx, train=False):
            return images

    @hookimpl
    def bdbench_register_attacks(self):
        return [self.BadNetAgain]


def test_duplicate_name_is_an_error():
    with pytest.raises(RegistryError, match="duplicate attack name 'badnet'"):
        build_registry(plugin_manager(extra_plugins=(_Dup(),)))


class _WrongBase:
    class NotAProbe(Attack):
        name = "sneaky"
        locality = "local"

        def apply_trigger(self, images, ctx, train=False):
            return images

    @hookimpl
    def bdbench_register_probes(self):
        return [self.NotAProbe]


def test_wrong_base_is_an_error():
    with pytest.raises(RegistryError, match="not a Probe"):
        build_registry(plugin_manager(extra_plugins=(_WrongBase(),)))


class _BadName:
    class Upper(Probe):
        name = "MeanAblation"

        def run(self, classifier, data, ctx):
            raise NotImplementedError

    @hookimpl
    def bdbench_register_probes(self):
        return [self.Upper]


def test_bad_name_is_an_error():
    with pytest.raises(RegistryError, match="snake_case"):
        build_registry(plugin_manager(extra_plugins=(_BadName(),)))


class _Misspelt:
    @hookimpl
    def bdbench_register_attackz(self):
        return []


def test_hook_matching_no_spec_is_rejected():
    with pytest.raises(RegistryError, match="bdbench_register_attackz"):
        plugin_manager(extra_plugins=(_Misspelt(),))


def test_broken_plugin_package_is_a_one_line_error(monkeypatch):
    import importlib.metadata

    class _EP:
        name, group, value = "broken", "bdbench", "broken_pkg.plugin"

        def load(self):
            raise ImportError("No module named 'broken_pkg'")

    class _Dist:
        metadata = {"name": "bdbench-broken"}
        version = "9.9"
        entry_points = [_EP()]

    real = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [*real(), _Dist()])
    with pytest.raises(RegistryError) as info:
        plugin_manager()
    assert "bdbench-broken" in str(info.value) and "failed to import" in str(info.value)
    assert "\n" not in str(info.value)


def test_invalid_config_is_one_line():
    with pytest.raises(BenchError) as info:
        default_registry().create("attack", "blended", {"alpha": 2.0})
    msg = str(info.value)
    assert "\n" not in msg and "alpha = 2.0" in msg and "less than 1" in msg
    with pytest.raises(BenchError, match="extra_field"):
        default_registry().create("attack", "blended", {"extra_field": 1})
