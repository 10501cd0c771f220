"""The plugin guide's worked example works as documented: install it, list it, run it, see it in a leaderboard.

``docs/examples/bdbench_example_defense`` is pip-installed (editable, offline: ``--no-deps --no-index
--no-build-isolation``) into the running interpreter's environment unless it is already importable from this
checkout (``make test`` installs both examples beforehand, as the guide says to, so that the contract tests
cover them from a fresh clone; this install is for a bare ``pytest`` elsewhere). Everything that reads entry points then runs in a subprocess, so the registry is built fresh, with
``BDBENCH_HOME`` pointing at a temporary folder. The suite is a miniature world (about 25 s on a 2-core CPU);
its numbers mean nothing, only that the example's row exists and holds numbers.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "bdbench_example_defense"
NAME = "example_median_filter"
DIST = "bdbench-example-defense"
ADAPTIVE_EXAMPLE = ROOT / "docs" / "examples" / "bdbench_example_adaptive"

SUITE = f"""\
name: docs_example
description: the plugin guide's worked example on a miniature world
model: {{arch: tiny, image_size: 16, patch_size: 8, width: 32, layers: 2, heads: 4, text_width: 32, text_layers: 1,
        text_heads: 2, embed_dim: 32, context_length: 16}}
data: {{kind: world, image_size: 16, n_pretrain: 200, n_finetune: 100, n_test: 60, n_heldout: 40, n_retrieval: 40}}
pretrain: {{epochs: 1, lr: 0.001, batch_size: 50}}
finetune: {{epochs: 1, lr: 0.001, batch_size: 50}}
attacks:
  - {{name: badnet, config: {{patch_size: 4}}}}
pipelines:
  - []
  - [{NAME}]
seeds: [0]
evaluation: {{detector_samples: 20, probe_samples: 20, batch_size: 64}}
"""


def _installed_from_here(package: str = "bdbench_example_defense", path: Path = EXAMPLE) -> bool:
    """True when a fresh interpreter imports the example package from this checkout."""
    probe = subprocess.run(  # find_spec locates the package without importing it (and torch with it)
        [sys.executable, "-c", f"import importlib.util as u; print(u.find_spec('{package}').origin)"],
        capture_output=True, text=True)
    return probe.returncode == 0 and Path(probe.stdout.strip()).resolve().is_relative_to(path.resolve())


def _install(package: str, path: Path) -> None:
    if not _installed_from_here(package, path):
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
             "-e", str(path)],
            capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"offline install of {path.name} failed:\n{done.stdout}\n{done.stderr}"
        assert _installed_from_here(package, path), f"installed, but a fresh interpreter cannot import {package}"
    # This process read its .pth files at start-up: make the package importable here too, so any later test
    # in this session that loads the entry points can import the newly registered plugin module.
    src = str(path / "src")
    if src not in sys.path:
        sys.path.append(src)
        importlib.invalidate_caches()


@pytest.fixture(scope="module")
def example_installed() -> None:
    _install("bdbench_example_defense", EXAMPLE)


@pytest.fixture(scope="module")
def adaptive_example_installed(example_installed) -> None:
    _install("bdbench_example_adaptive", ADAPTIVE_EXAMPLE)


def _bdbench(*args: str, home: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "BDBENCH_HOME": str(home)}
    script = Path(sys.executable).parent / "bdbench"  # the console script; `python -m bench_core.cli` otherwise
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "bench_core.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=home.parent)


def test_example_is_listed_with_its_package(example_installed, tmp_path):
    done = _bdbench("list", "--json", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    rows = [p for p in json.loads(done.stdout)["plugins"] if p["name"] == NAME]
    assert len(rows) == 1, f"{NAME} not listed by bdbench list --json"
    row = rows[0]
    assert row["kind"] == "defense" and row["stage"] == "inference"
    assert row["source"].split()[0] == DIST, row["source"]
    assert row["oracle"] is False and row["threat_model"] == "none; knows: none"


def test_example_runs_in_a_suite_and_reaches_the_leaderboard(example_installed, tmp_path):
    home = tmp_path / "home"
    suite = tmp_path / "docs_example.yaml"
    suite.write_text(SUITE)

    done = _bdbench("run", "--suite", str(suite), home=home)
    assert done.returncode == 0, f"bdbench run failed:\n{done.stderr[-3000:]}"
    assert "4 computed" in done.stderr and "0 failed" in done.stderr, done.stderr[-2000:]
    assert (home / "results.sqlite").is_file() and (home / "cache").is_dir()

    out = tmp_path / "board"
    done = _bdbench("leaderboard", "--suite", str(suite), "--out", str(out), home=home)
    assert done.returncode == 0, done.stderr
    defenses = (out / "defenses.md").read_text()
    # | example_median_filter |  <clean CACC> | <badnet ASR> / <badnet CACC> |
    number = r"\d+(?:\.\d+)?"
    row = re.search(rf"^\|\s*{re.escape(NAME)}\s*\|\s*({number})\s*\|\s*({number}) / ({number})\s*\|", defenses,
                    flags=re.M)
    assert row, f"no row with numbers for {NAME} in defenses.md:\n{defenses}"
    assert all(0 <= float(v) <= 100 for v in row.groups())
    assert f"| {NAME} " in defenses.split("## Threat models")[1], "the example is missing from the threat models"


def test_median_filter_matches_a_hand_computed_window(example_installed):
    import torch

    from bdbench_example_defense import median_filter

    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    y = median_filter(x, 3)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y[1, 2, 4, 5], x[1, 2, 3:6, 4:7].flatten().median())  # an interior pixel
    assert torch.equal(median_filter(x, 1), x)
    spike = torch.zeros(1, 3, 8, 8)
    spike[0, :, 3, 3] = 1.0
    assert median_filter(spike, 3).abs().max() == 0  # an isolated pixel (a tiny patch) is removed


def test_wrap_filters_before_an_earlier_input_transform(example_installed):
    """In [pdb, example_median_filter] PDB's stamp must land on the filtered image, not be blurred away."""
    import torch

    from bench_core import ZeroShotClassifier
    from bdbench_example_defense import MedianFilter

    def stamp(images):
        out = images.clone()
        out[:, :, 0, 0] = 2.0
        return out

    clf = ZeroShotClassifier(model=None, class_weights=torch.zeros(1, 4), input_transform=stamp)
    wrapped = MedianFilter({"kernel_size": 3}).wrap(clf, ctx=None)
    out = wrapped.input_transform(torch.zeros(1, 3, 8, 8))
    assert float(out[0, 0, 0, 0]) == 2.0 and float(out[0, 0, 1, 1]) == 0.0
    with pytest.raises(ValueError, match="odd"):
        MedianFilter({"kernel_size": 4})


def test_stress_runs_every_adaptive_attack_on_the_example_and_a_third_party_one(adaptive_example_installed,
                                                                               tmp_path):
    """`bdbench stress` on a third-party defense: the built-in defense-agnostic attacks and a third-party
    adaptive attack (with its own report section) run, with no core edit."""
    home, out = tmp_path / "home", tmp_path / "stress"
    done = _bdbench("stress", "--defense", NAME, "--suite", "quick", "--out", str(out), home=home, timeout=600)
    assert done.returncode == 0, f"bdbench stress failed:\n{done.stderr[-3000:]}"
    assert "median_aware_patch" in done.stderr and "adaptive_blend" in done.stderr, done.stderr[:500]
    page = (out / "adaptive.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in page.split("### Against defenses")[1].splitlines()
            if line.startswith("| ") and NAME in line}
    assert {"median_aware_patch", "adaptive_blend", "adaptive_patch"} <= set(rows), page
    number = r"\d+\.\d"
    assert re.search(rf"\|\s*badnet\s*\|\s*{number}\s*\|\s*{number}\s*\|", rows["median_aware_patch"]), rows
    assert "## Median-aware patch, per seed" in page  # the third-party package's own section
    assert "reference_contamination" not in page  # the median filter trusts no clean data
    assert (out / "runs-stress-example_median_filter.md").is_file()
