"""Suites: YAML files validated by pydantic that name the model, data, training and the plugin grid.

``bdbench run --suite default`` finds ``bench_core/suites/default.yaml``; a path to any YAML file works too.
A plugin entry is a name or ``{name: ..., config: {...}}``; a defense pipeline is a list of entries run in
stage order; ``[]`` is the no-defense row.

By default the grid is the full cross-product: every pipeline, detector and probe against every attack. A
pipeline written as ``{defenses: [...], attacks: [...]}``, or a detector or probe entry with ``attacks: [...]``,
runs only against the attacks it lists (``none``, the clean model, may be listed for pipelines). A cell's key
does not depend on the grid, so a narrower suite with the same shared settings reads and writes the same cells
as a wider one.
"""

from __future__ import annotations

import difflib
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


NO_ATTACK = "none"
"""The clean model's name in grids and results (no attack)."""


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



class Scoped(BaseModel):
    """A grid entry's ``attacks``: the attacks it runs against; None means every attack of the suite."""

    attacks: list[str] | None = None

    def runs_against(self, attack: str) -> bool:
        return self.attacks is None or attack in self.attacks


class DetectorRef(PluginRef, Scoped):
    """A detector, optionally limited to some attacks."""


class ProbeRef(PluginRef, Scoped):
    """A probe, optionally limited to some attacks and run on a defended model: ``pipeline`` lists the
    defenses applied first."""

    pipeline: list[PluginRef] = Field(default_factory=list)


class PipelineRef(Scoped):
    """A defense pipeline (a list of entries run in stage order) and the attacks it runs against.

    Written in YAML either as the plain list or as ``{defenses: [...], attacks: [...]}``; for a pipeline,
    ``attacks`` None means every attack of the suite and the clean model (``none``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    defenses: list[PluginRef] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        return {"defenses": value} if isinstance(value, list) else value

    @property
    def label(self) -> str:
        return " -> ".join(r.name for r in self.defenses) or "[]"


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
    pipelines: list[PipelineRef] = Field(default_factory=lambda: [PipelineRef()])
    detectors: list[DetectorRef] = Field(default_factory=list)
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
        _unique("pipelines", [p.label for p in self.pipelines])
        _unique("probes", [p.name + "".join(f" on {r.name}" for r in p.pipeline) for p in self.probes])
        for p in self.pipelines:
            _known_attacks(f"pipeline {p.label}", p.attacks, [NO_ATTACK, *names])
        for entry in [*self.detectors, *self.probes]:
            _known_attacks(entry.name, entry.attacks, names)
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


def _known_attacks(entry: str, listed: list[str] | None, allowed: list[str]) -> None:
    """``listed`` (an entry's ``attacks``) must name attacks the suite runs; the error suggests the nearest."""
    if listed is None:
        return
    if not listed:
        raise ValueError(f"{entry}: attacks is empty; leave it out to run against every attack")
    _unique(f"{entry}: attacks", listed)
    for name in listed:
        if name not in allowed:
            near = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"{entry}: attacks lists {name!r}, which this suite does not run{hint} "
                             f"(allowed: {', '.join(allowed)})")


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
