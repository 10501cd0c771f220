"""Suites: YAML files validated by pydantic that name the model, data, training and the plugin grid.

``bdbench run --suite default`` finds ``bench_core/suites/default.yaml``; a path to any YAML file works too.
A plugin entry is a name or ``{name: ..., config: {...}}``; a defense pipeline is a list of entries run in
stage order; ``[]`` is the no-defense row.

Several configurations of one plugin may appear in one suite (PDB at three patch sizes, BadNet at two poisoning
rates). Each entry has a ``label`` naming its rows, columns and cells: given explicitly, or by default the name
when the name is unique, else the name plus the config keys that differ between its entries
(``pdb[patch_size=2]``). Cell keys hold the full config, so two configurations never share a key.

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

from bench_core.cache import stable_json
from bench_core.data.loaders import SourceSpec
from bench_core.data.scene import SceneConfig
from bench_core.data.world import WorldConfig
from bench_core.errors import BenchError, config_error
from bench_core.models import ModelSpec
from bench_core.training import TrainConfig


from bench_core.keys import NO_ATTACK, suite_config_hash  # NO_ATTACK re-exported: the clean model's name


class PluginRef(BaseModel):
    """A plugin by registry name with config overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    preset: str | None = None  # a named preset of the plugin (e.g. "paper"); config overrides it
    label: str | None = None  # names the entry's rows and cells; default: see :func:`entry_labels`
    # attacks only: the target class by name ("banana"), resolved to config.target_class against the suite's
    # class list when the suite is planned (a name the list lacks is an error naming the closest)
    target: str | None = None
    # adaptive attacks only: labels of the suite's defenses and detectors the attack knows and is run against
    # (it then runs against those and without a defense, not against the whole grid)
    targets: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("label")
    @classmethod
    def _printable_label(cls, label: str | None) -> str | None:
        if label is not None and (not label.strip() or any(c in label for c in "|\n`") or "->" in label):
            raise ValueError(f"label {label!r} must be non-empty text without '|', '`', '->' or a line break")
        return label

    def settings(self) -> tuple:
        """What distinguishes two entries of the same plugin: preset, config overrides and target."""
        return (self.preset, stable_json(self.config), self.target,
                None if self.targets is None else tuple(self.targets))


def entry_labels(refs: list[PluginRef]) -> dict[tuple, str]:
    """Labels of distinct entries, by ``(name, settings)``: the explicit label, else the name when every entry
    of that name has the same settings, else ``name[key=value, ...]`` over the config keys (and preset) that
    differ between that name's entries."""
    distinct: dict[tuple, PluginRef] = {}
    for ref in refs:
        distinct.setdefault((ref.name, ref.settings()), ref)
    by_name: dict[str, list[PluginRef]] = {}
    for ref in distinct.values():
        by_name.setdefault(ref.name, []).append(ref)
    labels: dict[tuple, str] = {}
    for name, group in by_name.items():
        views = [{**({"preset": r.preset} if r.preset else {}), **r.config,
                  **({"target": r.target} if r.target else {}),
                  **({"targets": "+".join(r.targets)} if r.targets else {})} for r in group]
        keys = sorted({k for v in views for k in v})
        differing = [k for k in keys if len({stable_json(v.get(k)) for v in views}) > 1]
        for ref, view in zip(group, views):
            if ref.label:
                label = ref.label
            elif len(group) == 1:
                label = name
            else:
                shown = [f"{k}={_show(view[k])}" for k in differing if k in view]
                label = f"{name}[{', '.join(shown)}]" if shown else name
            labels[(ref.name, ref.settings())] = label
    return labels


def _show(value: Any) -> str:
    return value if isinstance(value, str) else stable_json(value)



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


class RealData(BaseModel):
    """Real data for the paper preset: fine-tune pairs, a labelled test split, held-out clean pairs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["real"] = "real"
    finetune: SourceSpec
    test: SourceSpec
    heldout: SourceSpec
    retrieval: SourceSpec | None = None  # clean pairs for recall@k; None skips retrieval metrics
    reference_fraction: float = Field(0.2, gt=0, lt=1)  # paper: 20% of the test split as clean validation
    # zero-shot prompts ("a photo of a {}."); None: CLIP's 80 ImageNet templates (Radford et al. 2021), as the
    # paper's zero-shot evaluation
    templates: tuple[str, ...] | None = None


class WorldData(WorldConfig):
    """The generated world (see :mod:`bench_core.data.world`)."""

    kind: Literal["world"] = "world"
    # what target-class captions written by attacks and defenses say about the image's other attributes:
    # "random" (default; a poisoner does not describe the image) or "image" (copy them)
    caption_attributes: Literal["random", "image"] = "random"


class SceneData(SceneConfig):
    """The scene world (see :mod:`bench_core.data.scene`): 80 colour x shape classes in cluttered scenes,
    generated once to disk and read lazily."""

    kind: Literal["scene"] = "scene"
    caption_attributes: Literal["random", "image"] = "random"  # as for the world

    def pretraining_identity(self) -> dict:
        """What the pretraining split depends on (the clean model's key uses this, not every split's size)."""
        from bench_core.data.scene import pretraining_identity

        return pretraining_identity(self)


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    retrieval: bool = True  # image<->text recall@1/@5 on the retrieval split for every defense row
    detector_samples: int = Field(400, ge=10)  # clean and triggered test images scored per detector cell
    probe_samples: int = Field(600, ge=10)  # clean and triggered images per probe cell
    batch_size: int = Field(256, ge=1)


class Resources(BaseModel):
    """What one work unit asks of a worker (Ray's ``num_cpus`` / ``num_gpus``); not part of the config hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus_per_unit: float = Field(1, gt=0)  # Ray num_cpus per unit; also the torch threads a Ray task uses
    gpus_per_unit: float | None = Field(None, ge=0)  # Ray num_gpus per unit; None: 1 when the suite's device is CUDA
    loader_workers: int = Field(0, ge=0)  # DataLoader processes decoding lazy (real-data) batches; 0: in-process
    # torch threads per unit under every executor; None: the process's default (serial), cores // jobs
    # (processes), cpus_per_unit (ray). Float reductions depend on it: pin it for bit-identical numbers across
    # executors
    torch_threads: int | None = Field(None, ge=1)


class Suite(BaseModel):
    """One benchmark grid. The shared settings (model, data, training, evaluation) make the config hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    model: ModelSpec = ModelSpec()
    data: WorldData | SceneData | RealData = Field(default_factory=WorldData, discriminator="kind")
    pretrain: TrainConfig | None = TrainConfig()  # None: use the model's pretrained weights as the clean model
    finetune: TrainConfig = TrainConfig()
    attacks: list[PluginRef] = Field(default_factory=list)
    pipelines: list[PipelineRef] = Field(default_factory=lambda: [PipelineRef()])
    detectors: list[DetectorRef] = Field(default_factory=list)
    probes: list[ProbeRef] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    evaluation: EvalConfig = EvalConfig()
    device: str = "auto"  # auto = CUDA when present, CPU otherwise; or cpu, cuda, cuda:N
    resources: Resources = Resources()

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
        for entry in [*self.detectors, *self.probes, *(r for p in self.pipelines for r in p.defenses),
                      *(r for p in self.probes for r in p.pipeline)]:
            if entry.target is not None:
                raise ValueError(f"{entry.name}: target names an attack's target class; only attacks take it")
            if entry.targets is not None:
                raise ValueError(f"{entry.name}: targets names what an adaptive attack knows; only attacks take it")
        for stage, train in (("pretrain", self.pretrain), ("finetune", self.finetune)):
            if train is not None and train.epochs == 0:
                raise ValueError(f"{stage}.epochs is 0: nothing would be trained and every cell would score an "
                                 f"untrained model; allowed: 1 or more")
        if not self.pipelines:
            raise ValueError("pipelines is empty: the board would have no defense table and no clean row; list [] "
                             "for the no-defense row, then any defense pipelines")
        for attack in self.attacks:
            if attack.target is not None and "target_class" in attack.config:
                raise ValueError(f"attack {attack.name}: both target: {attack.target!r} and config.target_class: "
                                 f"{attack.config['target_class']!r} are set; set one of them")
        names = self.attack_labels()
        if NO_ATTACK in names:
            raise ValueError("'none' is implicit (the clean model is always evaluated); remove it from attacks")
        _unique("attacks", self.attacks, names)
        _unique("detectors", self.detectors, self.detector_labels())
        _unique("pipelines", self.pipelines, [self.pipeline_label(p) or "[]" for p in self.pipelines])
        _unique("probes", self.probes, [self.probe_label(p) for p in self.probes])
        for p in self.pipelines:
            _known_attacks(f"pipeline {self.pipeline_label(p) or '[]'}", p.attacks, [NO_ATTACK, *names])
        for entry, label in [*zip(self.detectors, self.detector_labels()),
                             *((p, self.probe_label(p)) for p in self.probes)]:
            _known_attacks(label, entry.attacks, names)
        targetable = [*dict.fromkeys([*self.defense_labels().values(), *self.detector_labels()])]
        for attack, label in zip(self.attacks, names):
            for target in attack.targets or []:
                if target not in targetable:
                    near = difflib.get_close_matches(target, targetable, n=1)
                    hint = f"; did you mean {near[0]!r}?" if near else ""
                    raise ValueError(f"attack {label}: targets lists {target!r}, which is not a defense or detector "
                                     f"of this suite{hint} (allowed: {', '.join(targetable) or 'none'})")
            if attack.targets is not None and not attack.targets:
                raise ValueError(f"attack {label}: targets is empty; name the defenses or detectors it attacks")
        return self

    # --- labels (see entry_labels) ----------------------------------------------------------------------------
    def attack_labels(self) -> list[str]:
        labels = entry_labels(self.attacks)
        return [labels[(a.name, a.settings())] for a in self.attacks]

    def detector_labels(self) -> list[str]:
        labels = entry_labels(list(self.detectors))
        return [labels[(d.name, d.settings())] for d in self.detectors]

    def defense_labels(self) -> dict[tuple, str]:
        """Labels of every distinct defense entry, in pipelines and in probes' pipelines alike."""
        return entry_labels([r for p in [*(p.defenses for p in self.pipelines), *(p.pipeline for p in self.probes)]
                             for r in p])

    def pipeline_labels(self, refs: list[PluginRef]) -> tuple[str, ...]:
        labels = self.defense_labels()
        return tuple(labels[(r.name, r.settings())] for r in refs)

    def pipeline_label(self, pipeline: PipelineRef) -> str:
        """``pdb -> decomp_rep``; '' for the no-defense row."""
        return " -> ".join(self.pipeline_labels(pipeline.defenses))

    def probe_labels(self) -> list[str]:
        labels = entry_labels(list(self.probes))
        return [labels[(p.name, p.settings())] for p in self.probes]

    def probe_label(self, probe: ProbeRef) -> str:
        """``mean_ablation``, or ``pdb_robustness on pdb`` for a probe run on a defended model."""
        own = self.probe_labels()[self.probes.index(probe)]
        pipeline = " -> ".join(self.pipeline_labels(probe.pipeline))
        return own + (f" on {pipeline}" if pipeline else "")

    def config_hash(self) -> str:
        """Short hash of the settings that every cell shares (model, data, training, evaluation)."""
        return suite_config_hash(self.model, self.data, self.pretrain, self.finetune, self.evaluation)


def _unique(field: str, entries: list, labels: list[str]) -> None:
    """Entries must differ: an entry repeated with the same settings, or two entries given one label, is an
    error."""
    seen: dict[str, Any] = {}
    for entry, label in zip(entries, labels):
        if label in seen:
            same = seen[label] == entry
            raise ValueError(f"{field} lists {label!r} twice" + (
                " with the same settings; remove one" if same else
                "; give the entries different labels (label: ...)"))
        seen[label] = entry


def _known_attacks(entry: str, listed: list[str] | None, allowed: list[str]) -> None:
    """``listed`` (an entry's ``attacks``) must name attacks the suite runs; the error suggests the nearest."""
    if listed is None:
        return
    if not listed:
        raise ValueError(f"{entry}: attacks is empty; leave it out to run against every attack")
    _unique(f"{entry}: attacks", listed, listed)
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
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BenchError(f"suite file {name_or_path!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                             f"at offset {exc.start}); save it as UTF-8") from None
        except OSError as exc:
            raise BenchError(f"cannot read suite file {name_or_path!r}: {exc.strerror}") from None
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
