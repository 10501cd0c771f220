"""The generated default world: coloured shapes on textured backgrounds, with template captions.

Every image shows one shape (the class) with a colour, a location, a size and a background texture; every
caption names a random subset of those attributes through one of several templates, so captions carry real,
compositional semantics and the class name is not the only word the text tower must learn. Generation is
deterministic in ``(config, split)`` and needs no network.

Images are stored as ``uint8`` arrays (H, W, 3) in a :class:`datasets.Dataset`; :func:`to_tensor` turns a
column into float tensors in [0, 1], the unit every plugin works in.
"""

from __future__ import annotations

import math
import random
from typing import Literal

import datasets
import numpy as np
import pyarrow as pa
import torch
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field

CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "diamond", "ring", "crescent", "arrow", "hexagon",
)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 230, 50),
    "purple": (160, 60, 220), "orange": (250, 140, 20), "white": (245, 245, 245), "cyan": (40, 220, 230),
}
LOCATIONS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5), "top left": (0.3, 0.3), "top right": (0.7, 0.3),
    "bottom left": (0.3, 0.7), "bottom right": (0.7, 0.7),
}
SIZES: dict[str, float] = {"small": 0.42, "large": 0.6}  # shape diameter as a fraction of the image side
TEXTURES: tuple[str, ...] = ("plain", "noisy", "striped", "dotted")

CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {size} {color} {shape} in the {location}",
    "a photo of a {color} {shape} on a {texture} background",
    "a {shape} at the {location}",
    "a {size} {shape}",
    "there is a {color} {shape}",
    "a drawing of a {shape}, {color}, {location}",
    "a {shape} on a {texture} background",
    "a {color} {shape}",
)
"""Caption templates for pairs; the poisoning attacks reuse them to write target-class captions."""

CLASS_PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a drawing of a {}.",
    "a {} shape.",
    "a picture of a {}.",
    "a {}.",
)
"""Zero-shot prompt templates; class embeddings are the normalised mean over these."""

Split = Literal["pretrain", "finetune", "test", "heldout", "retrieval"]
_SPLIT_SALT: dict[str, int] = {"pretrain": 11, "finetune": 23, "test": 37, "heldout": 41, "retrieval": 53}


class WorldConfig(BaseModel):
    """Sizes of the generated world's splits; the defaults are the default suite's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(32, ge=16, le=256)  # 32 px: what a 2-core CPU trains in minutes (SPEC §3)
    n_pretrain: int = Field(20000, ge=10)  # clean pretraining pairs for the clean model
    n_finetune: int = Field(5000, ge=10)  # fine-tune pairs the attacker poisons (SPEC §3 study: 5k)
    n_test: int = Field(1250, ge=10)  # labelled test split; 20% of it is the clean reference (paper §5)
    n_heldout: int = Field(1000, ge=10)  # clean pairs disjoint from the rest (CleanCLIP, PDB oracle reserve)
    n_retrieval: int = Field(500, ge=10)  # clean pairs used only to measure retrieval recall@k
    reference_fraction: float = Field(0.2, gt=0, lt=1)  # paper: 20% of the test split as clean validation
    seed: int = 0  # the world is a fixed data set; run seeds vary poisoning and training, not the world


def _polygon(cx: float, cy: float, r: float, n: int, rot: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(rot + 2 * math.pi * k / n), cy + r * math.sin(rot + 2 * math.pi * k / n))
            for k in range(n)]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
                fill: tuple[int, int, int], bg: tuple[int, int, int], rot: float) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, r * 1.25, 4, math.pi / 4 + rot * 0.2), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.15, 3, -math.pi / 2 + rot * 0.2), fill=fill)
    elif shape == "star":
        pts = []
        for k in range(10):
            rr = r * (1.15 if k % 2 == 0 else 0.45)
            a = -math.pi / 2 + rot * 0.2 + math.pi * k / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        draw.polygon(pts, fill=fill)
    elif shape == "cross":
        w = r * 0.38
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r * 1.2), (cx + r * 0.7, cy), (cx, cy + r * 1.2), (cx - r * 0.7, cy)], fill=fill)
    elif shape == "ring":
        draw.ellipse(box, fill=fill)
        ri = r * 0.5
        draw.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=bg)
    elif shape == "crescent":
        draw.ellipse(box, fill=fill)
        off = r * 0.55
        draw.ellipse((cx - r + off, cy - r - off * 0.3, cx + r + off, cy + r - off * 0.3), fill=bg)
    elif shape == "arrow":
        w = r * 0.3
        draw.rectangle((cx - r, cy - w, cx + r * 0.1, cy + w), fill=fill)
        draw.polygon([(cx + r * 0.1, cy - r * 0.8), (cx + r * 1.05, cy), (cx + r * 0.1, cy + r * 0.8)], fill=fill)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r * 1.1, 6, rot * 0.2), fill=fill)
    else:  # pragma: no cover - CLASSES is closed
        raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(CLASSES)}")


def _background(texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.integers(10, 90, size=3).astype(np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if texture == "noisy":
        img += rng.normal(0, 22, size=(size, size, 3))
    elif texture == "striped":
        period = int(rng.integers(3, 6))
        stripes = ((np.arange(size) // period) % 2).astype(np.float32) * 35
        img += stripes[:, None, None] if rng.random() < 0.5 else stripes[None, :, None]
    elif texture == "dotted":
        step = int(rng.integers(4, 7))
        img[::step, ::step] += 60
    return np.clip(img + rng.normal(0, 4, size=img.shape), 0, 255)


def render_image(shape: str, color: str, location: str, size: str, texture: str,
                 image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one (H, W, 3) uint8 image; drawn at 4x and downsampled for anti-aliased edges."""
    scale = 4
    big = image_size * scale
    bg = _background(texture, image_size, rng)
    bg_img = Image.fromarray(bg.astype(np.uint8)).resize((big, big), Image.NEAREST)
    draw = ImageDraw.Draw(bg_img)
    fx, fy = LOCATIONS[location]
    jitter = 0.06
    cx = (fx + rng.uniform(-jitter, jitter)) * big
    cy = (fy + rng.uniform(-jitter, jitter)) * big
    r = SIZES[size] * rng.uniform(0.9, 1.1) * big / 2
    jitter_rgb = rng.integers(-25, 26, size=3)
    fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLORS[color], jitter_rgb))
    bg_mean = tuple(int(v) for v in bg.mean(axis=(0, 1)))
    _draw_shape(draw, shape, cx, cy, r, fill, bg_mean, float(rng.uniform(-1, 1)))
    return np.asarray(bg_img.resize((image_size, image_size), Image.BILINEAR), dtype=np.uint8)


def random_attributes(rng: random.Random) -> dict[str, str]:
    """Colour, location, size and texture drawn uniformly (no shape)."""
    return {"color": rng.choice(list(COLORS)), "location": rng.choice(list(LOCATIONS)),
            "size": rng.choice(list(SIZES)), "texture": rng.choice(TEXTURES)}


def caption_for(attrs: dict[str, str], rng: random.Random, shape: str | None = None) -> str:
    """One caption for the attributes ``attrs`` (keys shape, color, location, size, texture).

    ``shape`` overrides the named class: caption writers use it to write a target-class caption (with the
    image's attributes, or random ones — see ``DataBundle.caption_writer``) as diverse as clean captions.
    """
    fields = dict(attrs)
    if shape is not None:
        fields["shape"] = shape
    return rng.choice(CAPTION_TEMPLATES).format(**fields)


def generate_split(config: WorldConfig, split: Split) -> datasets.Dataset:
    """Generate one split as a ``datasets.Dataset`` with columns image, caption, label and the attributes."""
    n = {"pretrain": config.n_pretrain, "finetune": config.n_finetune,
         "test": config.n_test, "heldout": config.n_heldout, "retrieval": config.n_retrieval}[split]
    seed = config.seed * 1000 + _SPLIT_SALT[split]
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    rows: dict[str, list] = {k: [] for k in ("image", "caption", "label", "color", "location", "size", "texture")}
    for i in range(n):
        label = i % len(CLASSES) if split in ("test", "heldout", "retrieval") else int(rng.integers(len(CLASSES)))
        attrs = {"shape": CLASSES[label], **random_attributes(prng)}
        rows["image"].append(render_image(attrs["shape"], attrs["color"], attrs["location"], attrs["size"],
                                          attrs["texture"], config.image_size, rng))
        rows["caption"].append(caption_for(attrs, prng))
        rows["label"].append(label)
        for key in ("color", "location", "size", "texture"):
            rows[key].append(attrs[key])
    features = datasets.Features({
        "image": datasets.Array3D(shape=(config.image_size, config.image_size, 3), dtype="uint8"),
        "caption": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(CLASSES)),
        "color": datasets.Value("string"),
        "location": datasets.Value("string"),
        "size": datasets.Value("string"),
        "texture": datasets.Value("string"),
    })
    rows["image"] = np.stack(rows["image"]) if rows["image"] else rows["image"]
    return datasets.Dataset.from_dict(rows, features=features)


def _image_column(ds: datasets.Dataset) -> np.ndarray:
    """The ``image`` column as one (N, H, W, 3) array, read from Arrow without a per-row Python copy."""
    feature = ds.features["image"]
    if not isinstance(feature, datasets.Array3D):
        return np.stack([np.asarray(im.convert("RGB") if hasattr(im, "convert") else im) for im in ds["image"]])
    column = ds.data.column("image").combine_chunks()
    storage = column.storage if isinstance(column, pa.ExtensionArray) else column
    for _ in range(3):
        storage = storage.flatten()
    return storage.to_numpy(zero_copy_only=False).reshape(len(ds), *feature.shape)


def to_tensor(images: np.ndarray | datasets.Dataset) -> torch.Tensor:
    """(N, H, W, 3) uint8 array, or a Dataset's ``image`` column -> (N, 3, H, W) float32 in [0, 1]."""
    if isinstance(images, datasets.Dataset):
        images = _image_column(images)
    arr = np.array(images, dtype=np.uint8, copy=True)  # Arrow buffers are read-only
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
