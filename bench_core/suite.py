"""Suites: YAML files validated by pydantic that name the model, data, training and the plugin grid.

``bdbench run --suite default`` finds ``bench_core/suites/default.yaml``; a path to any YAML file works too.
A plugin entry is a name or ``{name: ..., config: {...}}``; a defense pipeline is a list of entries run in
stage order; ``[]`` is the no-defense row.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench_core.cache import content_key
from bench_core.data.loaders import SourceSpec
from bench_core.data.world import WorldConfig
from bench_core.errors import BenchError, config_error
from bench_core.models import ModelSpec
from bench_core.training import TrainConfig


class PluginRef(BaseModel):
    """A plugin by registry name with config overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    preset: str | None = None  # a named preset of the plugin (e.g. "paper"); config overrides it

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value



class ProbeRef(PluginRef):
    """A probe, optionally run on a defended model: ``pipeline`` lists the defenses applied first."""

    pipeline: list[PluginRef] = Field(default_factory=list)


class RealData(BaseModel):
    """Real data for the paper preset: fine-tune pairs, a labelled test split, held-out clean pairs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["real"] = "real"
    finetune: SourceSpec
    test: SourceSpec
    heldout: SourceSpec
    retrieval: SourceSpec | None = None  # clean pairs for recall@k; None skips retrieval metrics
    reference_fraction: float = Field(0.2, gt=0, lt=1)  # paper: 20% of the test split as clean validation


class WorldData(WorldConfig):
    """The generated world (see :mod:`bench_core.data.world`)."""

    kind: Literal["world"] = "world"
    # what target-class captions written by attacks and defenses say about the image's other attributes:
    # "random" (default; a poisoner does not describe the image) or "image" (copy them)
    caption_attributes: Literal["random", "image"] = "random"


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    retrieval: bool = True  # image<->text recall@1/@5 on the retrieval split for every defense row
    detector_samples: int = Field(400, ge=10)  # clean and triggered test images scored per detector cell
    probe_samples: int = Field(600, ge=10)  # clean and triggered images per probe cell
    batch_size: int = Field(256, ge=1)


class Suite(BaseModel):
    """One benchmark grid. Every field is part of the suite's config hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    model: ModelSpec = ModelSpec()
    data: WorldData | RealData = Field(default_factory=WorldData, discriminator="kind")
    pretrain: TrainConfig | None = TrainConfig()  # None: use the model's pretrained weights as the clean model
    finetune: TrainConfig = TrainConfig()
    attacks: list[PluginRef] = Field(default_factory=list)
    pipelines: list[list[PluginRef]] = Field(default_factory=lambda: [[]])
    detectors: list[PluginRef] = Field(default_factory=list)
    probes: list[ProbeRef] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    evaluation: EvalConfig = EvalConfig()
    device: str = "auto"  # auto = CUDA when present, CPU otherwise

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {seeds} repeat a value")
        return seeds

    @model_validator(mode="after")
    def _check(self) -> "Suite":
        if self.pretrain is None and not self.model.pretrained:
            raise ValueError("pretrain is null but model.pretrained is not set: the clean model needs one of them")
        names = [a.name for a in self.attacks]
        if "none" in names:
            raise ValueError("'none' is implicit (the clean model is always evaluated); remove it from attacks")
        # cells are identified by names in the leaderboard, so each entry must be unique by name
        _unique("attacks", names)
        _unique("detectors", [d.name for d in self.detectors])
        _unique("pipelines", [" -> ".join(r.name for r in p) or "[]" for p in self.pipelines])
        _unique("probes", [p.name + "".join(f" on {r.name}" for r in p.pipeline) for p in self.probes])
        return self

    def config_hash(self) -> str:
        """Short hash of the settings that every cell shares (model, data, training, evaluation)."""
        shared = {k: getattr(self, k) for k in ("model", "data", "pretrain", "finetune", "evaluation")}
        return content_key("suite", "shared", "1", shared)[:12]


def _unique(field: str, labels: list[str]) -> None:
    seen = set()
    for label in labels:
        if label in seen:
            raise ValueError(f"{field} lists {label!r} twice; each entry must differ by name "
                             f"(register a dotted variant of the plugin for a second configuration)")
        seen.add(label)


def shipped_suites() -> list[str]:
    folder = resources.files("bench_core") / "suites"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name or a YAML file by path; errors are one-line BenchErrors."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise BenchError(f"suite file {name_or_path!r} does not exist")
        text = path.read_text()
    else:
        from bench_core.errors import unknown_name_error

        shipped = shipped_suites()
        if name_or_path not in shipped:
            raise unknown_name_error("suite", name_or_path, shipped)
        text = (resources.files("bench_core") / "suites" / f"{name_or_path}.yaml").read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise BenchError(f"malformed suite {name_or_path!r}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise BenchError(f"malformed suite {name_or_path!r}: expected a mapping of settings, got {type(raw).__name__}")
    try:
        return Suite.model_validate(raw)
    except ValidationError as exc:
        raise config_error(f"suite {name_or_path!r}", exc) from None
