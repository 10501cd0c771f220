"""The scene world: a harder generated world, written once to disk and read lazily.

Each image is a cluttered scene: one main object whose **colour and shape are its class** ("red circle": the
world's 10 shapes x 8 colours = 80 classes), one to three smaller distractor objects of any shape and colour,
an optional occluding bar across the main object, a textured background (the original world's four textures
plus a gradient and a checker) and strong colour jitter. Captions name several properties (colour, shape, size,
location, texture, sometimes a distractor), so the text tower must compose them and TEXTSPAN's attribute
analyses have a vocabulary. Zero-shot accuracy is far from 100% for a small CLIP, as on real data.

A split is generated in fixed chunks of :data:`CHUNK` rows, each from its own seed (world seed, split, chunk
index), and streamed to an Arrow IPC file under ``$BDBENCH_HOME/worlds/<world key>/``: generation needs memory
for one chunk, whatever the split's size, and the same config gives the same bytes on any machine with the
same numpy and Pillow. Reading is lazy: images are a memory-mapped column (:class:`ArrowImages`) and captions a
lazy sequence (:class:`ArrowStrings`), so a 2M-pair pretraining split costs page cache, not process memory.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import pyarrow as pa
import torch
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field

from bench_core.data import world
from bench_core.data.images import ImageColumn

SHAPES: tuple[str, ...] = world.CLASSES
COLORS: dict[str, tuple[int, int, int]] = world.COLORS
CLASSES: tuple[str, ...] = tuple(f"{color} {shape}" for shape in SHAPES for color in COLORS)
"""80 classes, shape-major: index 0 is "red circle"."""
LOCATIONS = world.LOCATIONS
SIZES: dict[str, float] = {"small": 0.40, "large": 0.56}
TEXTURES: tuple[str, ...] = ("plain", "noisy", "striped", "dotted", "gradient", "checkered")
DISTRACTOR_SIZE = (0.16, 0.26)  # diameter as a fraction of the side: always smaller than the main object
BINDING_DISTRACTOR_SIZE = (0.30, 0.38)  # "binding" distractors: nearly the main object's size (0.40-0.56)

CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {size} {color} {shape} in the {location}",
    "a photo of a {color} {shape} on a {texture} background",
    "a {color} {shape} next to a {d_color} {d_shape}",
    "a {size} {color} {shape}",
    "there is a {color} {shape} and a small {d_shape}",
    "a drawing of a {color} {shape}, {location}",
    "a {color} {shape} on a {texture} background",
    "a {color} {shape}",
    "a {shape} in the {location}",
    "a cluttered scene with a {color} {shape}",
)
"""Captions of clean pairs; all but one name the class (colour and shape) together."""

CLASS_CAPTION_TEMPLATES: tuple[str, ...] = tuple(t for t in CAPTION_TEMPLATES if "{color} {shape}" in t)
"""Templates that name the class: what caption writers use for a target-class caption."""

CLASS_PROMPT_TEMPLATES: tuple[str, ...] = world.CLASS_PROMPT_TEMPLATES

Split = Literal["pretrain", "finetune", "test", "heldout", "retrieval"]
_SPLIT_SALT: dict[str, int] = {"pretrain": 11, "finetune": 23, "test": 37, "heldout": 41, "retrieval": 53}
CHUNK = 4096
"""Rows generated from one seed and written as one Arrow record batch."""
GENERATOR_VERSION = "1"
"""Part of the world's key: bump it when rendering changes, so no old file is read for a new world."""


class SceneConfig(BaseModel):
    """Sizes and difficulty of the scene world's splits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(32, ge=16, le=256)
    n_pretrain: int = Field(200_000, ge=10)
    n_finetune: int = Field(5000, ge=10)
    n_test: int = Field(2000, ge=10)  # 25 per class; 20% of it is the clean reference
    n_heldout: int = Field(2000, ge=10)
    n_retrieval: int = Field(500, ge=10)
    reference_fraction: float = Field(0.2, gt=0, lt=1)
    max_distractors: int = Field(3, ge=0, le=6)  # 1..max per image (0: none)
    occluder_rate: float = Field(0.5, ge=0, le=1)  # share of images with a bar across the main object
    color_jitter: int = Field(40, ge=0, le=100)  # per-channel RGB jitter of every object's colour
    seed: int = 0
    # "binding": every distractor shares the main object's colour or its shape, and distractors are nearly as
    # large as it (0.30-0.38 of the side), so only binding colour to shape names the class (a known weakness
    # of CLIP); "any" (default): distractors of any colour and shape, smaller (0.16-0.26)
    distractors: Literal["any", "binding"] = "any"

    def identity(self, fields: set[str] | None = None) -> dict:
        """The config as hashed into keys: options at their default value are left out, so adding an option
        never moves the key (or the files) of a world that does not use it."""
        dumped = self.model_dump(include=fields)
        return {k: v for k, v in dumped.items() if k not in _OPTIONAL or v != _OPTIONAL[k]}


_OPTIONAL = {"distractors": "any"}
"""Options added after the first shipped world, with the value that keeps that world's keys."""


def split_size(config: SceneConfig, split: Split) -> int:
    return {"pretrain": config.n_pretrain, "finetune": config.n_finetune, "test": config.n_test,
            "heldout": config.n_heldout, "retrieval": config.n_retrieval}[split]


# --- rendering ----------------------------------------------------------------------------------------------
def _background(texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    if texture in world.TEXTURES:
        return world._background(texture, size, rng)
    base = rng.integers(10, 100, size=3).astype(np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if texture == "gradient":
        ramp = np.linspace(0, 1, size, dtype=np.float32)
        axis = ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
        img += (axis[..., None] * rng.uniform(-60, 60, size=3)).astype(np.float32)
    elif texture == "checkered":
        cell = int(rng.integers(3, 7))
        grid = ((np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2).astype(np.float32)
        img += grid[..., None] * 30
    return np.clip(img + rng.normal(0, 4, size=img.shape), 0, 255)


def _jittered(color: str, jitter: int, rng: np.random.Generator) -> tuple[int, int, int]:
    offsets = rng.integers(-jitter, jitter + 1, size=3) if jitter else np.zeros(3, dtype=int)
    return tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLORS[color], offsets))


def render_scene(attrs: dict, config: SceneConfig, rng: np.random.Generator) -> np.ndarray:
    """One (S, S, 3) uint8 scene for ``attrs`` (from :func:`draw_attributes`); drawn at 4x, downsampled."""
    scale, size = 4, config.image_size
    big = size * scale
    bg = _background(attrs["texture"], size, rng)
    canvas = Image.fromarray(bg.astype(np.uint8)).resize((big, big), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    bg_mean = tuple(int(v) for v in bg.mean(axis=(0, 1)))
    # distractors first, so the main object is drawn over them (it may still be occluded below)
    for shape, color, (fx, fy), diameter in attrs["distractors"]:
        _draw(draw, shape, fx * big, fy * big, diameter * big / 2, _jittered(color, config.color_jitter, rng),
              bg_mean, float(rng.uniform(-1, 1)))
    fx, fy = LOCATIONS[attrs["location"]]
    cx = (fx + rng.uniform(-0.07, 0.07)) * big
    cy = (fy + rng.uniform(-0.07, 0.07)) * big
    r = SIZES[attrs["size"]] * rng.uniform(0.85, 1.1) * big / 2
    _draw(draw, attrs["shape"], cx, cy, r, _jittered(attrs["color"], config.color_jitter, rng), bg_mean,
          float(rng.uniform(-1, 1)))
    if attrs["occluded"]:
        angle = rng.uniform(0, math.pi)
        half, width = r * 1.4, r * rng.uniform(0.25, 0.45)
        dx, dy = math.cos(angle) * half, math.sin(angle) * half
        draw.line((cx - dx, cy - dy, cx + dx, cy + dy), width=max(1, int(width)),
                  fill=tuple(int(v) for v in rng.integers(20, 200, size=3)))
    return np.asarray(canvas.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill, bg, rot: float) -> None:
    world._draw_shape(draw, shape, cx, cy, r, fill, bg, rot)


def draw_attributes(label: int, config: SceneConfig, rng: np.random.Generator, prng: random.Random) -> dict:
    """Everything one scene shows: the class's colour and shape, and random size, location, texture,
    distractors and occlusion."""
    shape, color = SHAPES[label // len(COLORS)], list(COLORS)[label % len(COLORS)]
    n_distractors = int(rng.integers(1, config.max_distractors + 1)) if config.max_distractors else 0
    if config.distractors == "binding":
        distractors = [_binding_distractor(shape, color, rng, prng) for _ in range(n_distractors)]
    else:
        distractors = [(prng.choice(SHAPES), prng.choice(list(COLORS)),
                        (float(rng.uniform(0.12, 0.88)), float(rng.uniform(0.12, 0.88))),
                        float(rng.uniform(*DISTRACTOR_SIZE))) for _ in range(n_distractors)]
    return {"shape": shape, "color": color, "location": prng.choice(list(LOCATIONS)),
            "size": prng.choice(list(SIZES)), "texture": prng.choice(TEXTURES),
            "distractors": distractors, "occluded": bool(rng.random() < config.occluder_rate)}


def _binding_distractor(shape: str, color: str, rng: np.random.Generator, prng: random.Random) -> tuple:
    """A distractor with the main object's colour and another shape, or its shape and another colour."""
    if prng.random() < 0.5:
        d_shape, d_color = prng.choice([s for s in SHAPES if s != shape]), color
    else:
        d_shape, d_color = shape, prng.choice([c for c in COLORS if c != color])
    return (d_shape, d_color, (float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.15, 0.85))),
            float(rng.uniform(*BINDING_DISTRACTOR_SIZE)))


def caption_for(attrs: dict, rng: random.Random, templates: Sequence[str] = CAPTION_TEMPLATES) -> str:
    """One caption for a scene's attributes (a distractor, when the template names one, is the first)."""
    d_shape, d_color = (attrs["distractors"][0][0], attrs["distractors"][0][1]) if attrs.get("distractors") \
        else (rng.choice(SHAPES), rng.choice(list(COLORS)))
    fields = {k: attrs[k] for k in ("shape", "color", "location", "size", "texture")}
    return rng.choice(templates).format(d_shape=d_shape, d_color=d_color, **fields)


def random_attributes(rng: random.Random) -> dict:
    """Size, location, texture and one distractor drawn at random (no class): for target-class captions."""
    return {"location": rng.choice(list(LOCATIONS)), "size": rng.choice(list(SIZES)),
            "texture": rng.choice(TEXTURES), "distractors": [(rng.choice(SHAPES), rng.choice(list(COLORS)))]}


def class_caption(cls: int, attrs: dict | None, rng: random.Random) -> str:
    """A caption naming class ``cls`` (colour and shape), with the image's other attributes or random ones."""
    fields = dict(attrs) if attrs is not None else random_attributes(rng)
    fields["shape"], fields["color"] = SHAPES[cls // len(COLORS)], list(COLORS)[cls % len(COLORS)]
    return caption_for(fields, rng, CLASS_CAPTION_TEMPLATES)


def generate_chunk(config: SceneConfig, split: Split, chunk: int) -> pa.RecordBatch:
    """Rows ``[chunk * CHUNK, ...)`` of ``split``: deterministic in (config, split, chunk) alone."""
    n = split_size(config, split)
    start, stop = chunk * CHUNK, min(n, (chunk + 1) * CHUNK)
    seed = [config.seed, _SPLIT_SALT[split], chunk]
    rng = np.random.default_rng(seed)
    prng = random.Random(f"{config.seed}-{split}-{chunk}")
    balanced = split in ("test", "heldout", "retrieval")
    images = np.empty((stop - start, config.image_size, config.image_size, 3), dtype=np.uint8)
    columns: dict[str, list] = {k: [] for k in ("caption", "label", "color", "location", "size", "texture")}
    for i in range(start, stop):
        label = i % len(CLASSES) if balanced else int(rng.integers(len(CLASSES)))
        attrs = draw_attributes(label, config, rng, prng)
        images[i - start] = render_scene(attrs, config, rng)
        columns["caption"].append(caption_for(attrs, prng))
        columns["label"].append(label)
        for key in ("color", "location", "size", "texture"):
            columns[key].append(attrs[key])
    width = config.image_size * config.image_size * 3
    image_array = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(images),
                                                       [None, pa.py_buffer(images.tobytes())])
    return pa.RecordBatch.from_arrays(
        [image_array, pa.array(columns["caption"]), pa.array(columns["label"], pa.int16()),
         *(pa.array(columns[k]) for k in ("color", "location", "size", "texture"))],
        names=["image", "caption", "label", "color", "location", "size", "texture"])


# --- the files on disk --------------------------------------------------------------------------------------
def world_key(config: SceneConfig) -> str:
    """Content key of the whole world (every split): its config and the generator's version."""
    from bench_core.cache import content_key

    return content_key("world", "scene", GENERATOR_VERSION, config.identity())


def pretraining_identity(config: SceneConfig) -> dict:
    """The fields the pretraining split's bytes depend on, with the generator's version."""
    return {"kind": "scene", "generator": GENERATOR_VERSION, "n_pretrain": config.n_pretrain,
            **config.identity({"image_size", "max_distractors", "occluder_rate", "color_jitter", "seed",
                               *_OPTIONAL})}


def worlds_root() -> Path:
    from bench_core.cache import bdbench_home

    return bdbench_home() / "worlds"


def split_path(config: SceneConfig, split: Split) -> Path:
    return worlds_root() / world_key(config)[:24] / f"{split}.arrow"


def _manifest(path: Path) -> Path:
    return path.with_suffix(".json")


def write_split(config: SceneConfig, split: Split, path: Path, workers: int = 1) -> None:
    """Generate ``split`` into ``path`` (temporary file + rename; the manifest JSON, written last, marks it
    whole). ``workers`` > 1 renders chunks in that many processes; the bytes do not depend on it."""
    n_chunks = math.ceil(split_size(config, split) / CHUNK)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        writer = None
        for batch in _chunks(config, split, n_chunks, workers):
            if writer is None:
                writer = pa.ipc.new_file(tmp, batch.schema)
            writer.write_batch(batch)
        writer.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _manifest(path).write_text(json.dumps({"rows": split_size(config, split), "bytes": path.stat().st_size,
                                           "generator": GENERATOR_VERSION, "config": config.model_dump()}))


def _chunks(config: SceneConfig, split: Split, n_chunks: int, workers: int) -> Iterator[pa.RecordBatch]:
    if workers <= 1 or n_chunks <= 1:
        yield from (generate_chunk(config, split, c) for c in range(n_chunks))
        return
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(generate_chunk, [config] * n_chunks, [split] * n_chunks, range(n_chunks))


def is_whole(config: SceneConfig, split: Split, path: Path) -> bool:
    """The file and its manifest exist and agree on the row count and byte size."""
    try:
        manifest = json.loads(_manifest(path).read_text())
        return manifest["rows"] == split_size(config, split) and manifest["bytes"] == path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return False


def open_split(config: SceneConfig, split: Split, workers: int | None = None) -> pa.Table:
    """The split's Arrow table, memory-mapped; generated first when its file is missing or incomplete."""
    path = split_path(config, split)
    if not is_whole(config, split, path):
        write_split(config, split, path, workers or min(4, os.cpu_count() or 1))
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


# --- lazy columns -------------------------------------------------------------------------------------------
class ArrowImages(ImageColumn):
    """The scene world's ``image`` column (raw uint8 rows in a memory-mapped Arrow file), decoded per access."""

    def __init__(self, table: pa.Table, image_size: int):
        self._size = image_size
        self._chunks = [np.frombuffer(c.buffers()[1], dtype=np.uint8, count=len(c) * image_size * image_size * 3,
                                      offset=c.offset * image_size * image_size * 3)
                        .reshape(len(c), image_size, image_size, 3) for c in table.column("image").chunks]
        self._starts = np.cumsum([0] + [len(c) for c in self._chunks])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def image_size(self) -> int:
        return self._size

    def rows(self, rows: list[int]) -> torch.Tensor:
        out = np.empty((len(rows), self._size, self._size, 3), dtype=np.uint8)
        if rows:
            index = np.asarray(rows)
            chunk = np.searchsorted(self._starts, index, side="right") - 1
            for c in np.unique(chunk):
                where = chunk == c
                out[where] = self._chunks[c][index[where] - self._starts[c]]
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


class ArrowStrings(Sequence[str]):
    """A string column of an Arrow table as a lazy, read-only sequence (slices and ints)."""

    def __init__(self, column: pa.ChunkedArray):
        self._column = column

    def __len__(self) -> int:
        return len(self._column)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return tuple(self._column.slice(start, max(0, stop - start)).to_pylist())
            return tuple(self[i] for i in range(start, stop, step))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"caption index {index} out of range for {len(self)} captions")
        return self._column[index].as_py()

    def take(self, rows: Sequence[int]) -> list[str]:
        return self._column.take(pa.array(list(rows), pa.int64())).to_pylist()

    def __add__(self, other):
        return tuple(self) + tuple(other)


class SceneSplit:
    """One split opened lazily: images, captions, labels and per-row attributes on demand."""

    def __init__(self, config: SceneConfig, split: Split):
        self.table = open_split(config, split)
        self.image_size = config.image_size

    @cached_property
    def images(self) -> ArrowImages:
        return ArrowImages(self.table, self.image_size)

    @cached_property
    def captions(self) -> ArrowStrings:
        return ArrowStrings(self.table.column("caption"))

    @cached_property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self.table.column("label").to_numpy().astype(np.int64))

    def attrs(self) -> tuple[dict[str, str], ...]:
        """Per-row attribute dicts (small splits: the pretraining split never builds them)."""
        cols = {k: self.table.column(k).to_pylist() for k in ("color", "location", "size", "texture")}
        return tuple({"shape": SHAPES[int(l) // len(COLORS)], **{k: cols[k][i] for k in cols}}
                     for i, l in enumerate(self.labels.tolist()))
