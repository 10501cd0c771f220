"""Planning catches every mistake before any work: one line on stderr naming the value and what is allowed,
exit 2, nothing stored (no result row, no cache entry)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bench_core.cli import main

QUICK = yaml.safe_load(open("bench_core/suites/quick.yaml"))


def _suite(tmp_path: Path, **changes) -> str:
    raw = {**QUICK, **changes}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _nothing_stored() -> None:
    home = Path(os.environ["BDBENCH_HOME"])
    cached = [p for p in (home / "cache").rglob("*") if p.is_file()] if (home / "cache").exists() else []
    assert not cached, cached
    db = home / "results.sqlite"
    if db.exists():
        from bench_core.store import ResultStore
        assert ResultStore(db).all() == []


def _fails(capsys, suite_path: str, *expected: str, command: str = "run") -> str:
    capsys.readouterr()  # drop what setting up printed (datasets' progress bars)
    code = main([command, "--suite", suite_path])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("bdbench: error: "), err
    for text in expected:
        assert text in err, err
    _nothing_stored()
    return err


def _parquet(path: Path, rows: dict, features=None) -> Path:
    import datasets

    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))
    return path


def _images(n: int, size: int = 16):
    import numpy as np
    from PIL import Image

    return [Image.fromarray(np.full((size, size, 3), 40 * i % 255, dtype=np.uint8)) for i in range(n)]


def test_target_class_outside_the_class_list(capsys, tmp_path):
    path = _suite(tmp_path, attacks=[{"name": "badnet", "config": {"target_class": 12}}])
    _fails(capsys, path, "attack badnet: target_class 12 is outside the class list", "allowed: 0..9", "0 circle")


def test_unknown_open_clip_architecture_names_the_closest_few(capsys, tmp_path):
    path = _suite(tmp_path, model={"arch": "ViT-B-33", "image_size": 224, "pretrained": "openai"}, pretrain=None)
    err = _fails(capsys, path, "unknown open_clip architecture 'ViT-B-33'", "did you mean", "'ViT-B-32'")
    assert err.count("'") <= 12  # a few suggestions, not the 100+ architectures


def test_missing_weights_file(capsys, tmp_path):
    missing = str(tmp_path / "nowhere" / "clip.safetensors")
    path = _suite(tmp_path, model={**QUICK["model"], "pretrained": missing})
    _fails(capsys, path, f"weights file {missing!r} does not exist")
    path = _suite(tmp_path, model={"arch": "ViT-B-32", "image_size": 224, "pretrained": missing}, pretrain=None,
                  data={**QUICK["data"], "image_size": 224})
    _fails(capsys, path, f"weights file {missing!r} does not exist")


@pytest.mark.parametrize("change, message", [
    ({"width": 30, "heads": 4}, "width 30 is not divisible by heads 4"),
    ({"text_width": 30, "text_heads": 4}, "text_width 30 is not divisible by text_heads 4"),
])
def test_widths_not_divisible_by_heads(capsys, tmp_path, change, message):
    _fails(capsys, _suite(tmp_path, model={**QUICK["model"], **change}), message)


def test_data_and_model_image_sizes_differ(capsys, tmp_path):
    path = _suite(tmp_path, data={**QUICK["data"], "image_size": 32})
    _fails(capsys, path, "data.image_size 32 differs from the model's image size 16", "allowed: 16")


def test_unknown_or_absent_device(capsys, tmp_path):
    _fails(capsys, _suite(tmp_path, device="gpu"), "unknown device 'gpu'", "allowed: auto, cpu, cuda, cuda:N")
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        _fails(capsys, _suite(tmp_path, device=f"cuda:{n}"), f"device 'cuda:{n}' does not exist")
    else:
        _fails(capsys, _suite(tmp_path, device="cuda"), "device 'cuda' asks for a CUDA GPU, but torch sees none")


def _real_data(tmp_path: Path, test_rows: dict | None = None, test_features=None) -> dict:
    import datasets

    pairs = _parquet(tmp_path / "pairs.parquet", {"image": _images(30), "caption": [f"a photo {i}" for i in range(30)]},
                     datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")}))
    if test_rows is None:
        test_rows = {"image": _images(40), "label": [i % 2 for i in range(40)]}
        test_features = datasets.Features({"image": datasets.Image(),
                                           "label": datasets.ClassLabel(names=["cat", "dog"])})
    test = _parquet(tmp_path / "test.parquet", test_rows, test_features)
    return {"kind": "real", "finetune": {"source": str(pairs)}, "test": {"source": str(test)},
            "heldout": {"source": str(pairs)}}


def test_real_data_with_a_pretraining_stage(capsys, tmp_path):
    path = _suite(tmp_path, data=_real_data(tmp_path))  # quick's pretrain stage kept
    _fails(capsys, path, "real data and a pretrain stage", "set pretrain: null")


def _real_suite(tmp_path: Path, data: dict) -> str:
    weights = tmp_path / "w.safetensors"
    from safetensors.torch import save_file
    from bench_core.models import ModelSpec, build_model

    spec = ModelSpec(**QUICK["model"])
    save_file({k: v.contiguous() for k, v in build_model(spec).clip.state_dict().items()}, str(weights))
    return _suite(tmp_path, data=data, pretrain=None, model={**QUICK["model"], "pretrained": str(weights)})


def test_local_data_sources_missing_empty_without_columns_or_class_names(capsys, tmp_path):
    import datasets

    good = _real_data(tmp_path)
    _real_suite(tmp_path, good)  # a valid real-data suite plans (checked below for each broken variant)
    assert main(["plan", "--suite", str(tmp_path / "suite.yaml")]) == 0
    capsys.readouterr()

    missing = {**good, "test": {"source": str(tmp_path / "absent.parquet")}}
    _fails(capsys, _real_suite(tmp_path, missing), "data.test: data source", "absent.parquet' does not exist")

    empty = _parquet(tmp_path / "empty.parquet", {"image": [], "label": []},
                     datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}))
    _fails(capsys, _real_suite(tmp_path, {**good, "test": {"source": str(empty)}}), "data.test", "is empty")

    no_caption = _parquet(tmp_path / "nocap.parquet", {"image": _images(5), "note": ["x"] * 5},
                          datasets.Features({"image": datasets.Image(), "note": datasets.Value("string")}))
    _fails(capsys, _real_suite(tmp_path, {**good, "finetune": {"source": str(no_caption)}}),
           "data.finetune: no caption column found", "columns: image, note")

    plain_labels = _parquet(tmp_path / "plain.parquet", {"image": _images(20), "label": [i % 2 for i in range(20)]},
                            datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    _fails(capsys, _real_suite(tmp_path, {**good, "test": {"source": str(plain_labels)}}),
           "has no class names; give classnames in the suite")


def test_evaluation_split_left_empty_by_the_clean_reference(capsys, tmp_path):
    path = _suite(tmp_path, data={**QUICK["data"], "n_test": 10})  # one test image per class
    _fails(capsys, path, "data.n_test 10: nothing is left to evaluate once the clean reference")


def test_home_that_is_a_file(capsys, tmp_path, monkeypatch):
    home = tmp_path / "home_file"
    home.write_text("not a folder")
    monkeypatch.setenv("BDBENCH_HOME", str(home))
    code = main(["run", "--suite", "quick"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not a folder" in err and str(home) in err


def _read_only(home: Path, command: list[str]) -> list[str]:
    """``command`` run with ``home`` read-only for it: a read-only bind mount in a private user and mount
    namespace (so even root cannot write there), else the immutable flag, else a read-only mode (non-root)."""
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind -o ro '{home}' '{home}' && "
                            f"! touch '{home}/probe' 2>/dev/null"], capture_output=True)
    if probe.returncode == 0:
        return ["unshare", "-rm", "sh", "-c", f"mount --bind -o ro '{home}' '{home}' && exec \"$@\"", "sh",
                *command]
    if os.geteuid() != 0:
        home.chmod(0o555)
        return command
    pytest.skip("no way to make a folder read-only for root here (no user namespaces, no chattr)")


def test_read_only_home(tmp_path):
    home = tmp_path / "ro_home"
    home.mkdir()
    command = _read_only(home, [sys.executable, "-m", "bench_core.cli", "plan", "--suite", "quick"])
    out = subprocess.run(command, env={**os.environ, "BDBENCH_HOME": str(home)}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "is not writable" in out.stderr and str(home) in out.stderr
    assert list(home.iterdir()) == []


def test_corrupt_results_database(capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "results.sqlite").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("BDBENCH_HOME", str(home))
    for argv in (["run", "--suite", "quick"], ["results"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "results database" in err and "unreadable" in err, err
    assert not (home / "cache").exists()


def test_non_utf8_suite_file(capsys, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    _fails(capsys, str(path), "is not UTF-8 text", "byte 0xe9")


def test_bad_jobs_and_executor(capsys):
    assert main(["run", "--suite", "quick", "--executor", "processes", "--jobs", "0"]) == 2
    assert "--jobs 0 is not a worker count" in capsys.readouterr().err
    _nothing_stored()


# --- bad input that used to fail late, silently or with a traceback (issue [10]) --------------------------------

@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_zero_training_epochs_is_refused(tmp_path, capsys, stage):
    _fails(capsys, _suite(tmp_path, **{stage: {**QUICK[stage], "epochs": 0}}), f"{stage}.epochs is 0",
           "allowed: 1 or more")


def test_an_empty_pipeline_list_is_refused(tmp_path, capsys):
    _fails(capsys, _suite(tmp_path, pipelines=[]), "pipelines is empty", "list []")


def test_target_and_config_target_class_together_are_refused(tmp_path, capsys):
    attacks = [{"name": "badnet", "target": "circle", "config": {"patch_size": 4, "target_class": 3}}]
    _fails(capsys, _suite(tmp_path, attacks=attacks), "both target: 'circle' and config.target_class: 3")


@pytest.mark.parametrize("config, expected", [("[1, 2]", "is a JSON list"), ("{oops", "is not JSON"),
                                              ("4", "is a JSON int")])
def test_stress_config_must_be_a_json_object(capsys, config, expected):
    code = main(["stress", "--defense", "decomp_rep", "--suite", "quick", "--config", config])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "allowed: a JSON object" in err and err.count("\n") == 1, err
    _nothing_stored()


def test_leaderboard_out_naming_a_file_and_an_empty_format_are_refused(tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("x")
    for argv, expected in ((["--out", str(file)], "is a file"), (["--out", str(tmp_path / "b"), "--format", ""],
                                                                   "names no format")):
        code = main(["leaderboard", "--suite", "quick", *argv])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and err.count("\n") == 1, err
    assert file.read_text() == "x" and not (tmp_path / "b").exists()


def test_an_empty_plugin_allowlist_is_refused(tmp_path):
    env = {**os.environ, "BDBENCH_HOME": str(tmp_path), "BDBENCH_PLUGINS": " , "}
    out = subprocess.run([sys.executable, "-m", "bench_core.cli", "plan", "--suite", "quick"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "BDBENCH_PLUGINS is set but names no distribution" in out.stderr, out.stderr


def test_jobs_with_the_serial_executor_or_beyond_the_cores_warns(tmp_path, monkeypatch):
    env = {**os.environ, "BDBENCH_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    bad = _suite(tmp_path, pipelines=[])  # refused after the warning: nothing runs
    out = subprocess.run([sys.executable, "-m", "bench_core.cli", "run", "--suite", bad, "--jobs", "3"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert "warning: --jobs 3 is ignored by the serial executor" in out.stderr and out.returncode == 2
    out = subprocess.run([sys.executable, "-m", "bench_core.cli", "run", "--suite", bad, "--executor", "processes",
                          "--jobs", "999"], env=env, capture_output=True, text=True, timeout=300)
    assert "more workers than this machine's" in out.stderr and out.returncode == 2
