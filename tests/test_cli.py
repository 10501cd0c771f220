"""CLI: list/results JSON shapes and one-line errors with exit status 2."""

import json


from bench_core.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json(capsys):
    code, out, _ = run(capsys, "list", "--json")
    data = json.loads(out)
    names = {(p["kind"], p["name"]) for p in data["plugins"]}
    assert code == 0 and ("attack", "badnet") in names and ("detector", "strip") in names
    assert {"default", "quick", "full"} <= set(data["suites"])
    oracle = [p for p in data["plugins"] if p["name"] == "decomp_rep.oracle"][0]
    assert oracle["oracle"] and "ORACLE" in oracle["threat_model"]


def test_unknown_suite(capsys):
    code, _, err = run(capsys, "run", "--suite", "defualt")
    assert code == 2 and err.count("\n") == 1 and "'defualt'" in err and "did you mean 'default'" in err


def test_unknown_plugin_in_suite(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nattacks: [badnte]\n")
    code, _, err = run(capsys, "run", "--suite", str(path))
    assert code == 2 and err.count("\n") == 1 and "unknown attack 'badnte'; did you mean 'badnet'?" in err


def test_malformed_suite(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    code, _, err = run(capsys, "run", "--suite", str(path))
    assert code == 2 and err.count("\n") == 1 and "not valid YAML" in err
    path.write_text("name: s\nseedz: [1]\n")
    code, _, err = run(capsys, "run", "--suite", str(path))
    assert code == 2 and err.count("\n") == 1 and "seedz" in err and "Extra inputs are not permitted" in err


def test_invalid_config_value(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nattacks: [{name: blended, config: {alpha: 1.5}}]\n")
    code, _, err = run(capsys, "run", "--suite", str(path))
    assert code == 2 and err.count("\n") == 1 and "alpha = 1.5" in err and "less than 1" in err
    path.write_text("name: s\nfinetune: {lr: -1}\n")
    code, _, err = run(capsys, "run", "--suite", str(path))
    assert code == 2 and "finetune.lr = -1" in err and "greater than 0" in err


def test_results_json_fields(capsys, tmp_path):
    from bench_core.store import ResultRecord, ResultStore

    ResultStore().put(ResultRecord(key="k", suite="s", model="m", attack="none", seed=0, status="ok",
                                   config_hash="h", metrics={"cacc": 0.5}))
    code, out, _ = run(capsys, "results", "--json")
    rec = json.loads(out)[0]
    assert code == 0
    assert {"suite", "model", "attack", "defenses", "detector", "probe", "seed", "status", "metrics", "cost"} <= set(rec)


def test_run_writes_the_leaderboard_in_the_same_process(capsys, tmp_path):
    import yaml

    raw = yaml.safe_load(open("bench_core/suites/quick.yaml"))
    raw.update(attacks=["blended"], pipelines=[[]], detectors=["decomp_det"], probes=[])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, out, err = run(capsys, "run", "--suite", str(path), "--leaderboard", str(tmp_path / "lb"))
    assert code == 0 and "3 computed" in err  # none and blended evals, one detector cell
    assert sorted(p.rsplit("/", 1)[-1] for p in out.split()) == [
        "README.md", "defenses.md", "detectors.md", "probes.md", "runs.md"]
    assert "blended ASR / CACC" in (tmp_path / "lb" / "defenses.md").read_text()


def test_gpucheck_dry_run_on_the_cpu(capsys):
    from bench_core.gpucheck import main as gpucheck

    assert gpucheck(["--suite", "quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "device: cpu" in out and "peak GPU memory: n/a" in out
    assert out.count("images/s") == 1 + 3 + 3  # pretraining, three fine-tunes, three no-defense eval cells


def test_gpu_check_suite_is_the_paper_shape():
    from bench_core.suite import load_suite

    suite = load_suite("gpu_check")
    assert suite.model.arch == "ViT-B-32" and suite.data.image_size == 224 and suite.device == "cuda"
