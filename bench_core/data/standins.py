"""Local parquet stand-ins for real data sets, drawn from the generated world at any image size.

What a hub data set would be, offline: encoded images (JPEG, as CC3M and ImageNet) with captions (CC3M-like
pairs) or with
``ClassLabel`` labels (ImageNet-like test splits), written as parquet that :mod:`bench_core.data.loaders` opens
lazily. Tests, benchmarks and `make gpu-check` use them; anyone can try a real-data suite with them offline.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Iterator

import datasets
import numpy as np
from PIL import Image

from bench_core.data import world


def _rows(n: int, image_size: int, seed: int, balanced: bool) -> Iterator[dict]:
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    for i in range(n):
        label = i % len(world.CLASSES) if balanced else int(rng.integers(len(world.CLASSES)))
        attrs = {"shape": world.CLASSES[label], **world.random_attributes(prng)}
        pixels = world.render_image(attrs["shape"], attrs["color"], attrs["location"], attrs["size"],
                                    attrs["texture"], image_size, rng)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        yield {"image": {"bytes": buffer.getvalue(), "path": None}, "caption": world.caption_for(attrs, prng),
               "label": label}


def write_world_parquet(path: str | Path, n: int, image_size: int, seed: int = 0, labelled: bool = False) -> Path:
    """Write ``n`` world images of ``image_size`` px as parquet: columns image (JPEG) and caption, plus a
    ``label`` ClassLabel column (balanced over the classes) when ``labelled``. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {"image": datasets.Image(), "caption": datasets.Value("string")}
    if labelled:
        columns["label"] = datasets.ClassLabel(names=list(world.CLASSES))

    def rows() -> Iterator[dict]:
        for row in _rows(n, image_size, seed, balanced=labelled):
            yield {k: row[k] for k in columns}

    ds = datasets.Dataset.from_generator(rows, features=datasets.Features(columns), keep_in_memory=False,
                                         cache_dir=str(path.parent / ".standin_cache"))
    ds.to_parquet(str(path))
    return path
