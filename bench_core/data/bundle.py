"""The data a suite runs on: pretraining, fine-tune and held-out pairs, test and reference splits.

The generated world is held in memory as tensors; real data sets are lazy image columns
(:mod:`bench_core.data.images`) decoded per batch. The clean reference is a fixed, class-stratified 20% of the
labelled test split (the paper's validation data), handed to defenses as a tensor; evaluation uses the
remaining 80% (lazy for real data), so no defense ever calibrates on the images it is scored on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch

from bench_core.data import scene, world
from bench_core.data.images import Images, subset
from bench_core.data.loaders import load_labelled, load_pairs
from bench_core.interfaces import PairSet


@dataclass(frozen=True)
class TestSplit:
    images: Images
    labels: torch.Tensor


def clip_imagenet_templates() -> tuple[str, ...]:
    """CLIP's 80 ImageNet prompt templates (Radford et al. 2021), as open_clip ships them."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


def stratified_reference_mask(labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask choosing ``fraction`` of each class (the first images of each class, deterministic)."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for cls in labels.unique():
        idx = (labels == cls).nonzero().flatten()
        mask[idx[:max(1, round(fraction * len(idx)))]] = True
    return mask


class DataBundle:
    """A suite's data source: class names, zero-shot prompt templates, a caption writer and lazily opened
    splits, each computed once per process. ``DataBundle(spec, image_size)`` returns the source for the spec's
    kind — :class:`WorldSource` (the generated world, in memory) or :class:`RealSource` (``datasets`` sources,
    lazy) — so nothing outside this module branches on the kind of data."""

    def __new__(cls, data, image_size: int):
        if cls is DataBundle:
            cls = {"world": WorldSource, "scene": SceneSource}.get(data.kind, RealSource)
        return super().__new__(cls)

    def __init__(self, data, image_size: int):
        self.spec = data
        self.image_size = image_size

    # --- what a source defines ----------------------------------------------------------------------------
    @property
    def classnames(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def templates(self) -> tuple[str, ...]:
        raise NotImplementedError

    def caption_writer(self) -> Callable[[int, dict | None, random.Random], str]:
        """(class index, attributes of the image or None, rng) -> a caption naming that class."""
        raise NotImplementedError

    def _pairs(self, split: str) -> PairSet:
        raise NotImplementedError

    def _test(self) -> TestSplit:
        raise NotImplementedError

    # --- splits -------------------------------------------------------------------------------------------
    @cached_property
    def pretrain(self) -> PairSet:
        return self._pairs("pretrain")

    @cached_property
    def finetune(self) -> PairSet:
        return self._pairs("finetune")

    @cached_property
    def heldout(self) -> PairSet:
        return self._pairs("heldout")

    @cached_property
    def retrieval(self) -> PairSet:
        """Clean pairs reserved for retrieval recall@k (never trained on by any defense)."""
        return self._pairs("retrieval")

    @cached_property
    def test(self) -> TestSplit:
        return self._test()

    @cached_property
    def _reference_mask(self) -> torch.Tensor:
        return stratified_reference_mask(self.test.labels, self.spec.reference_fraction)

    @cached_property
    def reference(self) -> torch.Tensor:
        """Clean reference images (no labels are handed to defenses), decoded: defenses receive a tensor."""
        return self.test.images[self._reference_mask]

    @cached_property
    def reference_labels(self) -> torch.Tensor:
        """Labels of the reference images: for calibration rules and their metric, never handed to a defense."""
        return self.test.labels[self._reference_mask]

    @cached_property
    def evaluation(self) -> TestSplit:
        """The 80% of the test split that metrics are computed on (lazy for real data)."""
        keep = ~self._reference_mask
        images = self.test.images
        images = images[keep] if isinstance(images, torch.Tensor) else subset(images, keep.nonzero().flatten())
        return TestSplit(images, self.test.labels[keep])


class WorldSource(DataBundle):
    """The generated world: every split generated deterministically and held as tensors."""

    @property
    def classnames(self) -> tuple[str, ...]:
        return world.CLASSES

    @property
    def templates(self) -> tuple[str, ...]:
        return world.CLASS_PROMPT_TEMPLATES

    def caption_writer(self) -> Callable[[int, dict | None, random.Random], str]:
        """Captions naming a class, as diverse as the world's own captions.

        The other attributes (colour, location, size, texture) are drawn at random by default, not copied from
        the image: a poisoner writes target-class captions, it does not describe the image it stamps (web-scale
        poisoning reuses real captions of the target class). ``WorldData.caption_attributes = "image"`` copies
        the image's attributes instead.
        """
        classnames = self.classnames
        from_image = self.spec.caption_attributes == "image"

        def write(cls: int, attrs: dict | None, rng: random.Random) -> str:
            if not (from_image and attrs is not None):
                attrs = world.random_attributes(rng)
            return world.caption_for(attrs, rng, shape=classnames[cls])

        return write

    def _pairs(self, split: str) -> PairSet:
        ds = world.generate_split(self.spec, split)
        attrs = tuple({"shape": world.CLASSES[l], "color": c, "location": loc, "size": s, "texture": t}
                      for l, c, loc, s, t in zip(ds["label"], ds["color"], ds["location"], ds["size"], ds["texture"]))
        return PairSet(world.to_tensor(ds), tuple(ds["caption"]), torch.tensor(ds["label"]), attrs)

    def _test(self) -> TestSplit:
        ds = world.generate_split(self.spec, "test")
        return TestSplit(world.to_tensor(ds), torch.tensor(ds["label"]))


class SceneSource(DataBundle):
    """The scene world: every split generated once to an Arrow file on disk and read lazily (images per
    batch, pretraining captions per batch), so memory does not grow with the number of pairs."""

    @property
    def classnames(self) -> tuple[str, ...]:
        return scene.CLASSES

    @property
    def templates(self) -> tuple[str, ...]:
        return scene.CLASS_PROMPT_TEMPLATES

    def caption_writer(self) -> Callable[[int, dict | None, random.Random], str]:
        """Captions naming a class (its colour and shape); the other attributes random unless the suite's
        ``caption_attributes`` is "image" (as for the world)."""
        from_image = self.spec.caption_attributes == "image"

        def write(cls: int, attrs: dict | None, rng: random.Random) -> str:
            return scene.class_caption(cls, attrs if from_image else None, rng)

        return write

    def _pairs(self, split: str) -> PairSet:
        opened = scene.SceneSplit(self.spec, split)
        if split == "pretrain":  # captions stay lazy; nothing reads attributes of pretraining pairs
            return PairSet(opened.images, opened.captions, opened.labels)
        return PairSet(opened.images, tuple(opened.captions), opened.labels, opened.attrs())

    def _test(self) -> TestSplit:
        opened = scene.SceneSplit(self.spec, "test")
        return TestSplit(opened.images, opened.labels)


class RealSource(DataBundle):
    """``datasets`` sources (hub names, local folders, parquet): images stay encoded, decoded per batch."""

    @cached_property
    def _labelled(self):
        return load_labelled(self.spec.test, self.image_size)

    @property
    def classnames(self) -> tuple[str, ...]:
        return self._labelled[2]

    @property
    def templates(self) -> tuple[str, ...]:
        """The suite's templates, else CLIP's 80 ImageNet templates."""
        return tuple(self.spec.templates) if self.spec.templates else clip_imagenet_templates()

    def caption_writer(self) -> Callable[[int, dict | None, random.Random], str]:
        """Real data sets have no attributes: a class prompt template, without its final full stop."""
        classnames, templates = self.classnames, self.templates

        def write(cls: int, attrs: dict | None, rng: random.Random) -> str:
            return rng.choice(templates).format(classnames[cls]).rstrip(".")

        return write

    def _pairs(self, split: str) -> PairSet:
        if split == "pretrain":
            raise RuntimeError("real-data suites start from pretrained weights; there is no pretraining split")
        source = getattr(self.spec, split)
        if source is None:
            raise RuntimeError(f"this real-data suite names no {split} split")
        images, captions = load_pairs(source, self.image_size)
        return PairSet(images, tuple(captions), torch.full((len(images),), -1))

    def _test(self) -> TestSplit:
        images, labels, _ = self._labelled
        return TestSplit(images, labels)
