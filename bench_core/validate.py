"""Planning-time checks: everything a cell would otherwise discover late, found before any work starts.

Each failure is a one-line :class:`BenchError` naming the bad value and what is allowed (the CLI exits 2 and
stores nothing). :func:`check_home` covers the environment (``$BDBENCH_HOME``), :func:`check_plan` the suite as
planned: device, model, weights, image sizes, data sources and their columns and class names, target classes,
and the evaluation split left once the clean reference is taken out.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import torch

from bench_core.cache import bdbench_home
from bench_core.errors import BenchError
from bench_core.plan import Plan
from bench_core.suite import Suite

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def check_home() -> Path:
    """``$BDBENCH_HOME`` must be a writable folder (created when missing)."""
    home = bdbench_home()
    where = f"$BDBENCH_HOME ({str(home)!r})" if os.environ.get("BDBENCH_HOME") else f"the bdbench home {str(home)!r}"
    if home.exists() and not home.is_dir():
        raise BenchError(f"{where} is not a folder; point BDBENCH_HOME at a writable folder")
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"{where} is not writable ({exc.strerror}); point BDBENCH_HOME at a writable "
                         f"folder") from None
    return home


def check_plan(plan: Plan) -> None:
    """Every check of the module docstring, on the suite and the plugins as the plan resolved them."""
    suite = plan.suite
    check_device(suite.device)
    check_model(suite)
    classnames = check_data(suite)
    for spec in plan.attacks:
        if not 0 <= spec.target_class < len(classnames):
            shown = ", ".join(f"{i} {n}" for i, n in enumerate(classnames[:12]))
            more = f", ... ({len(classnames)} classes)" if len(classnames) > 12 else ""
            raise BenchError(f"attack {spec.label}: target_class {spec.target_class} is outside the class list; "
                             f"allowed: 0..{len(classnames) - 1} ({shown}{more})")


def check_device(device: str) -> None:
    if not _DEVICE.match(device):
        raise BenchError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    if device.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise BenchError(f"device {device!r} asks for a CUDA GPU, but torch sees none here; use device: auto "
                             f"(CUDA when present, CPU otherwise) or cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= n:
            raise BenchError(f"device {device!r} does not exist: torch sees {n} GPU(s); allowed: cuda:0..cuda:{n - 1}")
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise BenchError("device 'mps' is not available here; allowed: auto, cpu")


def check_model(suite: Suite) -> None:
    """Architecture, weights and the image size the model expects vs the data's."""
    spec = suite.model
    if spec.arch == "tiny":
        model_size = spec.image_size
        if spec.pretrained:
            _weights_file(spec.pretrained)
    else:
        import open_clip

        archs = open_clip.list_models()
        if spec.arch not in archs:
            near = difflib.get_close_matches(spec.arch, archs, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise BenchError(f"unknown open_clip architecture {spec.arch!r}{hint} ({len(archs)} architectures: "
                             f"`python -c 'import open_clip; print(open_clip.list_models())'`)")
        if spec.pretrained:
            tags = open_clip.list_pretrained_tags_by_model(spec.arch)
            if _looks_like_path(spec.pretrained) or spec.pretrained not in tags:
                if not _looks_like_path(spec.pretrained):
                    raise BenchError(f"model.pretrained {spec.pretrained!r} is neither a weights file nor a "
                                     f"pretrained tag of {spec.arch}; allowed tags: {', '.join(tags) or '(none)'}")
                _weights_file(spec.pretrained)
        cfg = open_clip.get_model_config(spec.arch) or {}
        size = cfg.get("vision_cfg", {}).get("image_size", spec.image_size)
        model_size = size[0] if isinstance(size, (list, tuple)) else size
        if spec.image_size != model_size:
            raise BenchError(f"model.image_size {spec.image_size} differs from {spec.arch}'s input size "
                             f"{model_size}; set model.image_size: {model_size}")
    data = suite.data
    if data.kind in ("world", "scene") and data.image_size != model_size:
        raise BenchError(f"data.image_size {data.image_size} differs from the model's image size {model_size}; "
                         f"allowed: {model_size} (or change the model)")


def _looks_like_path(value: str) -> bool:
    return "/" in value or value.endswith(WEIGHT_SUFFIXES) or value.startswith((".", "~"))


def _weights_file(value: str) -> None:
    path = Path(value).expanduser()
    if not path.is_file():
        raise BenchError(f"model.pretrained weights file {value!r} does not exist "
                         f"(allowed: an existing .safetensors or torch state-dict file, or an open_clip tag)")


def check_data(suite: Suite) -> tuple[str, ...]:
    """The data sources exist and have what the suite needs; returns the class names."""
    data = suite.data
    if data.kind == "world":
        from bench_core.data import world

        labels = [i % len(world.CLASSES) for i in range(data.n_test)]
        _evaluation_left(labels, data.reference_fraction, f"data.n_test {data.n_test}")
        return world.CLASSES
    if data.kind == "scene":
        from bench_core.data import scene

        labels = [i % len(scene.CLASSES) for i in range(data.n_test)]
        _evaluation_left(labels, data.reference_fraction, f"data.n_test {data.n_test}")
        return scene.CLASSES
    if suite.pretrain is not None:
        raise BenchError("this suite has real data and a pretrain stage; real-data suites start from pretrained "
                         "weights: set pretrain: null and model.pretrained")
    from bench_core.data.loaders import inspect_source

    for split in ("finetune", "heldout", "retrieval"):
        source = getattr(data, split)
        if source is not None:
            inspect_source(source, f"data.{split}", needs=("image", "caption"))
    test = inspect_source(data.test, "data.test", needs=("image", "label"))
    if test.labels is not None:
        _evaluation_left(test.labels, data.reference_fraction, f"data.test {data.test.source!r}")
    return test.classnames


def _evaluation_left(labels, fraction: float, what: str) -> None:
    """The evaluation split (the test split less the stratified clean reference) must not be empty."""
    from collections import Counter

    left = sum(n - max(1, round(fraction * n)) for n in Counter(labels).values())
    if left <= 0:
        raise BenchError(f"{what}: nothing is left to evaluate once the clean reference ({fraction:.0%} of each "
                         f"class, at least one image) is taken out; use more test images per class")
