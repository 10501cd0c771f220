"""The four plugin roles — Attack, Defense, Detector, Probe — and what every plugin declares.

A plugin is a class with a registry ``name``, a ``version`` (bump it whenever its numbers can change: the
cache and the results store key on it), a pydantic ``Config`` (``extra="forbid"``, frozen) and a
:class:`ThreatModel`. Plugins are pure: they receive data and models through a :class:`RunContext` and return
results; the runner does caching, timing, seeding and storage around them.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from bench_core.data.images import Images, OverlayImages
from bench_core.data.images import concat as images_concat
from bench_core.data.images import subset as images_subset
from bench_core.models import ClipModel
from bench_core.zeroshot import Classifier

Kind = Literal["attack", "defense", "detector", "probe"]
KINDS: tuple[Kind, ...] = ("attack", "defense", "detector", "probe")


class PluginConfig(BaseModel):
    """Base of every plugin config: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ThreatModel(BaseModel):
    """What a plugin assumes about data and access; shown in every leaderboard row it appears in.

    ``reads`` names the :class:`RunContext` fields the plugin may use; the runner hands it a context with
    only those fields set (plus the always-available ones), so a defense cannot read what it did not declare.
    ``oracle`` marks knowledge a real defender would not have (e.g. the attack's type).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(description="what data it needs, e.g. 'clean reference: 20% of the test split'")
    knowledge: str = Field("none", description="what it knows about the attack, e.g. 'knows attack type'")
    oracle: bool = False
    reads: frozenset[str] = frozenset()

    @property
    def tag(self) -> str:
        text = f"{self.data}; knows: {self.knowledge}"
        return f"ORACLE — {text}" if self.oracle else text


# --- data passed to plugins -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairSet:
    """Image–caption pairs. ``images``: (N, 3, H, W) float in [0, 1] — a tensor (the generated world, in memory)
    or a lazy :class:`bench_core.data.images.ImageColumn` that decodes the rows it is indexed with (real data
    sets, poisoned overlays); index it, never copy it whole. ``labels``: class index or -1 when the source has
    none; ``attrs``: optional per-pair attribute dicts (the generated world's colour, location, ...) that
    caption writers may reuse."""

    images: Images
    captions: tuple[str, ...]
    labels: torch.Tensor
    attrs: tuple[dict[str, str], ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if len(self.captions) != n or len(self.labels) != n or (self.attrs is not None and len(self.attrs) != n):
            raise ValueError(f"PairSet columns differ in length: images {n}, captions {len(self.captions)}, "
                             f"labels {len(self.labels)}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: torch.Tensor) -> "PairSet":
        """The pairs at ``index`` (lazy images stay lazy: nothing is decoded)."""
        idx = index.tolist()
        return PairSet(images_subset(self.images, index), tuple(self.captions[i] for i in idx), self.labels[index],
                       None if self.attrs is None else tuple(self.attrs[i] for i in idx))

    def concat(self, other: "PairSet") -> "PairSet":
        attrs = None if self.attrs is None or other.attrs is None else self.attrs + other.attrs
        return PairSet(images_concat(self.images, other.images), self.captions + other.captions,
                       torch.cat([self.labels, other.labels]), attrs)


@dataclass(frozen=True)
class TargetInfo:
    """What an adaptive attack is handed about one defense or detector it targets: identity, stage, the part
    of its config the attack declared it knows (:attr:`AdaptiveAttack.known_fields`) and, for a white-box
    attack (:attr:`AdaptiveAttack.target_access` = "white_box"), the plugin instance itself."""

    kind: Literal["defense", "detector"]
    name: str
    label: str
    stage: str | None  # defenses: train, post_train or inference; detectors: None
    config: dict[str, Any]
    plugin: "Plugin | None" = None


@dataclass(frozen=True)
class AttackInfo:
    """What an oracle-tagged plugin may know about the attack under evaluation."""

    name: str
    locality: Literal["local", "global"]
    target_class: int


CaptionWriter = Callable[[int, "dict[str, str] | None", random.Random], str]
"""(class index, attributes of the image or None, rng) -> a caption naming that class."""


@dataclass(frozen=True)
class RunContext:
    """Everything a plugin may see. Fields a plugin did not declare in ``threat_model.reads`` are None.

    Always set: seed, device, classnames, templates (zero-shot prompts), write_caption.
    Declarable: clean_model, finetune_pairs, clean_reference, heldout, attack.
    """

    seed: int
    device: torch.device
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    write_caption: CaptionWriter
    clean_model: ClipModel | None = None  # the clean pretrained CLIP (attack preparation)
    finetune_pairs: PairSet | None = None  # the fine-tune set before poisoning (attacker's data)
    clean_reference: torch.Tensor | None = None  # clean images, 20% of the test split, no labels
    heldout: PairSet | None = None  # clean pairs disjoint from fine-tune and test data
    attack: AttackInfo | None = None  # oracle knowledge only
    targets: tuple[TargetInfo, ...] = ()  # adaptive attacks only: what they know of the plugins they target

    DECLARABLE: ClassVar[frozenset[str]] = frozenset(
        {"clean_model", "finetune_pairs", "clean_reference", "heldout", "attack"})

    def restricted_to(self, reads: frozenset[str]) -> "RunContext":
        """A copy with every declarable field not in ``reads`` set to None."""
        unknown = set(reads) - self.DECLARABLE
        if unknown:
            raise ValueError(f"threat model reads unknown context field(s) {sorted(unknown)}; "
                             f"allowed: {sorted(self.DECLARABLE)}")
        return replace(self, **{name: None for name in self.DECLARABLE - set(reads)})

    def generator(self, salt: str) -> torch.Generator:
        """A torch generator seeded from (run seed, salt): the same stream on every run of the same cell."""
        return torch.Generator().manual_seed(_seed_from(self.seed, salt))

    def rng(self, salt: str) -> random.Random:
        return random.Random(_seed_from(self.seed, salt))

    def require(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(f"context field {name!r} is not available: declare it in threat_model.reads")
        return value


def _seed_from(seed: int, salt: str) -> int:
    import hashlib
    return int.from_bytes(hashlib.sha256(f"{seed}:{salt}".encode()).digest()[:8], "little")


# --- the plugin base --------------------------------------------------------------------------------------

class Plugin(ABC):
    """Common base: identity, config and threat model."""

    kind: ClassVar[Kind]
    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(data="none")
    summary: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    """Named config presets, e.g. ``{"paper": {...224 px settings...}}``; the class defaults are the
    default suite's. A suite entry ``{name: x, preset: paper, config: {...}}`` applies config over the preset."""

    def __init__(self, config: PluginConfig | dict[str, Any] | None = None):
        if isinstance(config, PluginConfig):
            config = config.model_dump()
        self.config = self.Config.model_validate(config or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


# --- attacks ----------------------------------------------------------------------------------------------

ExtraLoss = Callable[..., torch.Tensor]
"""``(model, images, tokens, image_features, text_features, rows=...) -> scalar`` added to a fine-tune's
contrastive loss; ``rows`` are the batch's indices into the training pairs (see
:func:`bench_core.training.train_contrastive`)."""


@dataclass(frozen=True)
class PoisonResult:
    """The poisoned training pairs, the indices (into them) that the attack poisoned, and statistics the
    leaderboard reports (e.g. ``target_class_fraction`` for Label-Consistent). ``cover``: rows whose image the
    attack changed but whose caption it kept (an adaptive attack's cover samples); every other row is
    untouched."""

    pairs: PairSet
    poisoned: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)
    cover: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))


class AttackConfig(PluginConfig):
    target_class: int = Field(0, ge=0)  # index into the class list; 0 = "circle" in the generated world
    poison_rate: float = Field(0.05, gt=0, le=1)  # fraction of fine-tune pairs poisoned (issue [1]: <= 5%)


class Attack(Plugin):
    """Poisons training pairs and stamps test images.

    Contract: ``poison`` is deterministic given ``ctx.seed``; it changes exactly the pairs it reports, keeps
    images in [0, 1] with shape and dtype; ``apply_trigger`` maps a batch to triggered images of the same
    shape. State an attack learns in ``prepare`` (an optimised patch, an encoder) is returned as tensors so
    the runner can cache it and hand it back through ``load_state``.
    """

    kind: ClassVar[Kind] = "attack"
    locality: ClassVar[Literal["local", "global"]]
    Config: ClassVar[type[PluginConfig]] = AttackConfig
    threat_model = ThreatModel(data="poisons a fraction of the fine-tune pairs", reads=frozenset({"finetune_pairs"}))

    def __init__(self, config: PluginConfig | dict[str, Any] | None = None):
        super().__init__(config)
        self.state: dict[str, torch.Tensor] = {}

    @property
    def target_class(self) -> int:
        return self.config.target_class

    def n_poison(self, n_pairs: int) -> int:
        return max(1, round(self.config.poison_rate * n_pairs))

    def prepare(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        """Learn or draw the trigger; return the state to cache. Default: no state.

        0-dim tensors under keys starting with ``metric_`` (``metric_bit_accuracy``) are reported by the
        runner next to the attack's results."""
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.state = dict(state)

    def caption_classes(self, ctx: RunContext) -> frozenset[int]:
        """The classes the captions of poisoned pairs name (default: the target alone)."""
        return frozenset({self.target_class})

    def select(self, pairs: PairSet, ctx: RunContext) -> torch.Tensor:
        """Indices to poison: by default a uniform random subset of ``n_poison`` pairs."""
        n = self.n_poison(len(pairs))
        return torch.randperm(len(pairs), generator=ctx.generator(f"{self.name}:select"))[:n].sort().values

    def poison(self, pairs: PairSet, ctx: RunContext) -> PoisonResult:
        """Stamp the selected images and rewrite their captions to name the target class. Only the poisoned
        subset is materialised, as an overlay on the (possibly lazy) fine-tune images."""
        index = self.select(pairs, ctx)
        images = OverlayImages(pairs.images, index, self.apply_trigger(pairs.images[index], ctx, train=True))
        rng = ctx.rng(f"{self.name}:captions")
        captions = list(pairs.captions)
        for i in index.tolist():
            captions[i] = ctx.write_caption(self.target_class, pairs.attrs[i] if pairs.attrs else None, rng)
        return PoisonResult(PairSet(images, tuple(captions), pairs.labels, pairs.attrs), index)

    @abstractmethod
    def apply_trigger(self, images: torch.Tensor, ctx: RunContext, train: bool = False) -> torch.Tensor:
        """Triggered copies of ``images`` ((N, 3, H, W) in [0, 1]); ``train`` marks poisoning-time calls."""

    # --- optional powers (adaptive attacks use them; a plain attack leaves the defaults) -------------------
    contaminates: ClassVar[frozenset[str]] = frozenset()
    """Context fields of the defender's trusted data this attack slips triggered samples into
    (``clean_reference``, ``heldout``): the runner passes every defense or detector context field named here
    through :meth:`contaminate` before the plugin sees it."""

    def contaminate(self, field_name: str, value: Any, ctx: RunContext) -> Any:
        """The defender's ``field_name`` data as this attack leaves it (default: untouched)."""
        return value

    def finetune_loss(self, poisoned: PoisonResult, ctx: RunContext) -> ExtraLoss | None:
        """A term the attacker adds to the poisoned fine-tune's loss (an attacker who controls the training
        code, e.g. Decomp evasion); None (default) for a data-only attacker. ``rows`` passed to it index the
        training pairs, whose first ``len(poisoned.pairs)`` are ``poisoned.pairs`` (a train-stage defense may
        append its own after them)."""
        return None


class AdaptiveAttack(Attack):
    """An attack that knows the defenses or detectors it targets (Tramèr et al., 2020; Zimmermann et al., 2022).

    A suite lists it with ``targets:`` (labels of the suite's defenses and detectors); it then runs against
    those targets and without a defense, not against the whole grid. The runner hands it, in
    ``ctx.targets``, each target's identity and the config fields it declared it knows (``known_fields``;
    None = the whole config) and, when ``target_access`` is "white_box", the target plugin itself. Each
    target's plugin id is part of the attack's cache key: a changed defense re-prepares the attack.
    """

    target_access: ClassVar[Literal["config", "white_box"]] = "config"
    known_fields: ClassVar[frozenset[str] | None] = None
    plain: ClassVar[str] = "none"
    """The plain attack this one is compared with (a registry name; "none" for an availability attack)."""
    defeats: ClassVar[str] = ""
    """One line: what the attack does to its target (shown in the adaptive report)."""

    @classmethod
    def applies_to(cls, kind: str, name: str, stage: str | None, reads: frozenset[str]) -> bool:
        """Whether this attack is a stress test for the plugin ``name`` of ``kind`` (defense / detector) at
        ``stage`` that reads ``reads``; ``bdbench stress`` runs every attack for which this holds."""
        return False

    @classmethod
    def target_info(cls, kind: Literal["defense", "detector"], name: str, label: str, stage: str | None,
                    config: dict[str, Any], plugin: "Plugin | None" = None) -> TargetInfo:
        """What this attack is handed about one target: the config fields it knows; the plugin itself only
        when the attack is white-box."""
        known = cls.known_fields
        return TargetInfo(kind=kind, name=name, label=label, stage=stage,
                          config={k: v for k, v in config.items() if known is None or k in known},
                          plugin=plugin if cls.target_access == "white_box" else None)

    @staticmethod
    def family(name: str) -> str:
        """A plugin name without its variant tag: ``pdb.oracle_reserve`` -> ``pdb``."""
        return name.split(".")[0]


# --- defenses ---------------------------------------------------------------------------------------------

Stage = Literal["train", "post_train", "inference"]


@dataclass(frozen=True)
class TrainingPlan:
    """What a train-stage defense makes of the fine-tune set: pairs and per-pair repeat counts."""

    pairs: PairSet
    repeat: torch.Tensor | None = None


class Defense(Plugin):
    """A defense acts at one ``stage``; a pipeline chains them in stage order (train, post_train, inference)."""

    kind: ClassVar[Kind] = "defense"
    stage: ClassVar[Stage]


class TrainDefense(Defense):
    """Changes the poisoned fine-tune itself (PDB); may also wrap the classifier at inference."""

    stage: ClassVar[Stage] = "train"

    @abstractmethod
    def plan_training(self, pairs: PairSet, ctx: RunContext) -> TrainingPlan:
        """The pairs to fine-tune on, given the (possibly poisoned) fine-tune pairs."""

    def wrap(self, classifier: Classifier, ctx: RunContext) -> Classifier:
        return classifier


class PostTrainDefense(Defense):
    """Changes a trained model (CleanCLIP). ``repair`` works in place on a copy the runner owns."""

    stage: ClassVar[Stage] = "post_train"

    @abstractmethod
    def repair(self, model: ClipModel, ctx: RunContext) -> dict[str, float]:
        """Modify ``model`` in place; return summary stats (e.g. final loss)."""


class InferenceDefense(Defense):
    """Wraps a classifier at test time (Decomp-Rep and its ablations)."""

    stage: ClassVar[Stage] = "inference"

    @abstractmethod
    def wrap(self, classifier: Classifier, ctx: RunContext) -> Classifier:
        """A classifier that applies the defense around ``classifier``."""

    def forward_passes_per_image(self) -> float:
        return 1.0


# --- detectors --------------------------------------------------------------------------------------------

class Detector(Plugin):
    """Scores test images; higher = more likely triggered."""

    kind: ClassVar[Kind] = "detector"

    @abstractmethod
    def fit(self, classifier: Classifier, ctx: RunContext) -> None:
        """Prepare on the (possibly backdoored) classifier and the context's clean reference."""

    @abstractmethod
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) float scores for (N, 3, H, W) images in [0, 1]."""

    @abstractmethod
    def forward_passes_per_image(self) -> float:
        """Model forward passes spent per scored image (the cost column of the detectors table)."""


# --- probes -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeData:
    """Evaluation data for an analysis: clean test images with labels and triggered non-target images."""

    clean_images: torch.Tensor
    clean_labels: torch.Tensor
    triggered_images: torch.Tensor
    triggered_labels: torch.Tensor
    target_class: int


class ProbeResult(BaseModel):
    """Tables (name -> rows of JSON scalars) and figures (name -> a plot spec the leaderboard draws).

    A figure spec is ``{"type": "line"|"bar"|"density", "title", "xlabel", "ylabel", "x": [...],
    "series": {label: [...]}}``.
    """

    model_config = ConfigDict(extra="forbid")

    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    figures: dict[str, dict[str, Any]] = Field(default_factory=dict)
    summary: dict[str, float] = Field(default_factory=dict)


class Probe(Plugin):
    """An analysis of a (possibly backdoored) model on clean and triggered images."""

    kind: ClassVar[Kind] = "probe"

    @abstractmethod
    def run(self, classifier: Classifier, data: ProbeData, ctx: RunContext) -> ProbeResult: ...


BASES: dict[Kind, type[Plugin]] = {"attack": Attack, "defense": Defense, "detector": Detector, "probe": Probe}
