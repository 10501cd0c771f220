"""Real data sets through Hugging Face ``datasets``: a hub name when online, a local folder or parquet offline.

Each loader returns tensors in [0, 1] resized to the model's image size, so real and generated data look the
same to plugins. Hub sources used by the paper preset: CC3M (``pixparse/cc3m-wds``) for fine-tune pairs,
ImageNet-1K validation, Caltech-101, Oxford Pets and CIFAR-10 for zero-shot evaluation. Scikit-learn's bundled
digits are a real labelled set that needs no download at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from bench_core.errors import BenchError

IMAGE_COLUMNS = ("image", "img", "jpg", "png", "webp")
CAPTION_COLUMNS = ("caption", "txt", "text")
LABEL_COLUMNS = ("label", "labels", "fine_label", "cls")


class SourceSpec(BaseModel):
    """Where a split comes from: a hub name, a local folder (imagefolder layout) or a parquet file / folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str  # hub name ("pixparse/cc3m-wds"), folder path, or path to .parquet file(s)
    split: str = "train"
    limit: int | None = Field(None, ge=1)  # first N rows (streaming from the hub)
    image_column: str | None = None  # default: first of IMAGE_COLUMNS present
    caption_column: str | None = None
    label_column: str | None = None
    classnames: tuple[str, ...] | None = None  # default: the dataset's ClassLabel names


def open_source(spec: SourceSpec) -> datasets.Dataset:
    """Open ``spec.source`` as a Dataset. Local paths never touch the network."""
    path = Path(spec.source).expanduser()
    if path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet"))):
        files = [str(path)] if path.is_file() else sorted(str(p) for p in path.glob("*.parquet"))
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    elif path.is_dir():
        ds = datasets.load_dataset("imagefolder", data_dir=str(path), split=spec.split)
    elif path.exists():
        raise BenchError(f"data source {spec.source!r} is a file but not .parquet; allowed: a hub name, "
                         f"a folder (imagefolder layout or parquet files) or a .parquet file")
    elif spec.source.startswith((".", "/", "~")):
        raise BenchError(f"data source {spec.source!r} does not exist")
    else:
        if spec.limit:
            stream = datasets.load_dataset(spec.source, split=spec.split, streaming=True)
            ds = datasets.Dataset.from_list(list(stream.take(spec.limit)), features=stream.features)
        else:
            ds = datasets.load_dataset(spec.source, split=spec.split)
    if spec.limit and len(ds) > spec.limit:
        ds = ds.select(range(spec.limit))
    return ds


def _column(ds: datasets.Dataset, wanted: str | None, candidates: Sequence[str], what: str) -> str:
    if wanted is not None:
        if wanted not in ds.column_names:
            raise BenchError(f"{what} column {wanted!r} not in data set; columns: {', '.join(ds.column_names)}")
        return wanted
    for name in candidates:
        if name in ds.column_names:
            return name
    raise BenchError(f"no {what} column found; tried {', '.join(candidates)}; columns: {', '.join(ds.column_names)}")


def images_to_tensor(images: Sequence, image_size: int) -> torch.Tensor:
    """PIL images or uint8 arrays -> (N, 3, S, S) float in [0, 1]: shorter side resized, centre-cropped."""
    out = []
    for im in images:
        if not isinstance(im, Image.Image):
            im = Image.fromarray(np.asarray(im, dtype=np.uint8))
        im = im.convert("RGB")
        w, h = im.size
        scale = image_size / min(w, h)
        im = im.resize((max(image_size, round(w * scale)), max(image_size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - image_size) // 2, (h - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
        out.append(torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1))
    return torch.stack(out).float().div_(255.0) if out else torch.empty(0, 3, image_size, image_size)


def load_labelled(spec: SourceSpec, image_size: int) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """(images, labels, classnames) of a labelled split (zero-shot evaluation)."""
    ds = open_source(spec)
    image_col = _column(ds, spec.image_column, IMAGE_COLUMNS, "image")
    label_col = _column(ds, spec.label_column, LABEL_COLUMNS, "label")
    classnames = spec.classnames
    if classnames is None:
        feature = ds.features[label_col]
        if not isinstance(feature, datasets.ClassLabel):
            raise BenchError(f"label column {label_col!r} has no class names; give classnames in the suite")
        classnames = tuple(n.replace("_", " ") for n in feature.names)
    return images_to_tensor(ds[image_col], image_size), torch.tensor(ds[label_col]), tuple(classnames)


def load_pairs(spec: SourceSpec, image_size: int) -> tuple[torch.Tensor, list[str]]:
    """(images, captions) of an image–caption split (fine-tune or CleanCLIP pairs)."""
    ds = open_source(spec)
    image_col = _column(ds, spec.image_column, IMAGE_COLUMNS, "image")
    caption_col = _column(ds, spec.caption_column, CAPTION_COLUMNS, "caption")
    return images_to_tensor(ds[image_col], image_size), [str(c) for c in ds[caption_col]]


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def load_digits(image_size: int) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Scikit-learn's bundled 8x8 digits (1,797 real scans) as RGB images of ``image_size``, with labels."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1).repeat(1, 3, 1, 1)
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1), torch.from_numpy(bunch.target).long(), DIGIT_NAMES
