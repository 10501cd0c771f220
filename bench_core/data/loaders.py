"""Real data sets through Hugging Face ``datasets``: a hub name when online, a local folder or parquet offline.

Each loader returns a lazy image column (:class:`bench_core.data.images.EncodedImages`): the images stay
encoded in the memory-mapped Arrow table and are decoded, resized to the model's image size and centre-cropped
per batch, so memory is bounded by the batch, not by the number of pairs. To plugins a column looks like the
(N, 3, S, S) tensor in [0, 1] it stands for. Hub sources used by the paper preset: CC3M (``pixparse/cc3m-wds``)
for fine-tune pairs, ImageNet-1K validation, Caltech-101, Oxford Pets and CIFAR-10 for zero-shot evaluation.
Scikit-learn's bundled digits are a real labelled set that needs no download at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from bench_core.data.images import EncodedImages
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
    else:  # the hub: Arrow shards on disk, memory-mapped; the first ``limit`` rows by split slicing
        split = f"{spec.split}[:{spec.limit}]" if spec.limit else spec.split
        ds = datasets.load_dataset(spec.source, split=split)
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


def load_labelled(spec: SourceSpec, image_size: int) -> tuple[EncodedImages, torch.Tensor, tuple[str, ...]]:
    """(lazy images, labels, classnames) of a labelled split (zero-shot evaluation)."""
    ds = open_source(spec)
    image_col = _column(ds, spec.image_column, IMAGE_COLUMNS, "image")
    label_col = _column(ds, spec.label_column, LABEL_COLUMNS, "label")
    classnames = spec.classnames
    if classnames is None:
        feature = ds.features[label_col]
        if not isinstance(feature, datasets.ClassLabel):
            raise BenchError(f"label column {label_col!r} has no class names; give classnames in the suite")
        classnames = tuple(n.replace("_", " ") for n in feature.names)
    return EncodedImages(ds, image_col, image_size), torch.tensor(ds[label_col]), tuple(classnames)


def load_pairs(spec: SourceSpec, image_size: int) -> tuple[EncodedImages, list[str]]:
    """(lazy images, captions) of an image–caption split (fine-tune or CleanCLIP pairs)."""
    ds = open_source(spec)
    image_col = _column(ds, spec.image_column, IMAGE_COLUMNS, "image")
    caption_col = _column(ds, spec.caption_column, CAPTION_COLUMNS, "caption")
    return EncodedImages(ds, image_col, image_size), [str(c) for c in ds.select_columns([caption_col])[caption_col]]


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def load_digits(image_size: int) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Scikit-learn's bundled 8x8 digits (1,797 real scans) as RGB images of ``image_size``, with labels."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1).repeat(1, 3, 1, 1)
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1), torch.from_numpy(bunch.target).long(), DIGIT_NAMES


@dataclass(frozen=True)
class SourceInfo:
    """What planning learns about a source without decoding an image: rows, columns, class names, labels."""

    rows: int
    columns: tuple[str, ...]
    classnames: tuple[str, ...] = ()
    labels: list[int] | None = None


def inspect_source(spec: SourceSpec, what: str, needs: tuple[str, ...]) -> SourceInfo:
    """Open ``spec`` far enough to check it (local parquet: its schema and label column only) and check that it
    is non-empty and has the ``needs`` columns ("image", "caption", "label") and, with a label, class names.
    Every problem is a one-line :class:`BenchError` naming ``what``."""
    path = Path(spec.source).expanduser()
    is_local = path.exists() or spec.source.startswith((".", "/", "~"))
    if is_local and not path.exists():
        raise BenchError(f"{what}: data source {spec.source!r} does not exist")
    files = [path] if path.suffix == ".parquet" else sorted(path.glob("*.parquet")) if path.is_dir() else []
    if files:
        info = _inspect_parquet(files, spec)
    else:
        try:
            ds = _dataset_info(open_source(spec)) if is_local else _hub_features(spec)
        except BenchError:
            raise
        except Exception as exc:
            raise BenchError(f"{what}: cannot open data source {spec.source!r} ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        info = ds
    if info.rows == 0:
        raise BenchError(f"{what}: data source {spec.source!r} is empty")
    picked = {}
    for need in needs:
        wanted = {"image": spec.image_column, "caption": spec.caption_column, "label": spec.label_column}[need]
        candidates = {"image": IMAGE_COLUMNS, "caption": CAPTION_COLUMNS, "label": LABEL_COLUMNS}[need]
        try:
            picked[need] = _pick(info.columns, wanted, candidates, need)
        except BenchError as exc:
            raise BenchError(f"{what}: {exc}") from None
    if "label" in needs:
        classnames = spec.classnames or info.classnames
        if not classnames:
            raise BenchError(f"{what}: label column {picked['label']!r} of {spec.source!r} has no class names; "
                             f"give classnames in the suite")
        return SourceInfo(info.rows, info.columns, tuple(classnames), info.labels)
    return info


def _pick(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise BenchError(f"{what} column {wanted!r} not in data set; columns: {', '.join(columns)}")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise BenchError(f"no {what} column found; tried {', '.join(candidates)}; columns: {', '.join(columns)}")


def _inspect_parquet(files: list[Path], spec: SourceSpec) -> SourceInfo:
    import pyarrow.parquet as pq

    schema = pq.read_schema(files[0])
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if spec.limit:
        rows = min(rows, spec.limit)
    classnames: tuple[str, ...] = ()
    meta = schema.metadata or {}
    if b"huggingface" in meta:  # datasets writes its Features (ClassLabel names) into the parquet metadata
        import json

        features = datasets.Features.from_dict(json.loads(meta[b"huggingface"])["info"]["features"])
        for feature in features.values():
            if isinstance(feature, datasets.ClassLabel):
                classnames = tuple(n.replace("_", " ") for n in feature.names)
    labels = None
    label_col = spec.label_column or next((c for c in LABEL_COLUMNS if c in schema.names), None)
    if label_col in schema.names:
        labels = [v for f in files for v in pq.read_table(f, columns=[label_col]).column(0).to_pylist()][:rows]
    return SourceInfo(rows, tuple(schema.names), classnames, labels)


def _hub_features(spec: SourceSpec) -> SourceInfo:
    """A hub data set's columns and class names from its builder (metadata only; needs the network)."""
    builder = datasets.load_dataset_builder(spec.source)
    features = builder.info.features or {}
    classnames: tuple[str, ...] = ()
    for feature in features.values():
        if isinstance(feature, datasets.ClassLabel):
            classnames = tuple(n.replace("_", " ") for n in feature.names)
    split = (builder.info.splits or {}).get(spec.split)
    rows = split.num_examples if split is not None and split.num_examples else (spec.limit or 1)
    return SourceInfo(rows, tuple(features), classnames)


def _dataset_info(ds: datasets.Dataset) -> SourceInfo:
    classnames: tuple[str, ...] = ()
    label_col = next((c for c in LABEL_COLUMNS if c in ds.column_names), None)
    if label_col is not None and isinstance(ds.features[label_col], datasets.ClassLabel):
        classnames = tuple(n.replace("_", " ") for n in ds.features[label_col].names)
    return SourceInfo(len(ds), tuple(ds.column_names), classnames, list(ds[label_col]) if label_col else None)
