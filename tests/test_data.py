"""The generated world, the stratified reference split, and real-data loaders on files the test writes."""

import numpy as np
import pytest
import torch
from PIL import Image

from bench_core.data import world
from bench_core.data.bundle import stratified_reference_mask
from bench_core.data.loaders import SourceSpec, load_digits, load_labelled, load_pairs
from bench_core.errors import BenchError


def test_world_is_deterministic_and_semantic():
    cfg = world.WorldConfig(n_test=30, image_size=16)
    a, b = world.generate_split(cfg, "test"), world.generate_split(cfg, "test")
    assert a["caption"] == b["caption"] and np.array_equal(a.with_format("numpy")["image"], b.with_format("numpy")["image"])
    assert set(a["label"]) == set(range(10))
    for caption, label in zip(a["caption"], a["label"]):
        assert world.CLASSES[label] in caption  # every caption names its class
    x = world.to_tensor(a)
    assert x.shape == (30, 3, 16, 16) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def test_splits_differ():
    cfg = world.WorldConfig(n_test=20, n_heldout=20, image_size=16)
    assert world.generate_split(cfg, "test")["caption"] != world.generate_split(cfg, "heldout")["caption"]


def test_caption_for_overrides_shape():
    import random

    attrs = {"shape": "circle", "color": "red", "location": "center", "size": "small", "texture": "plain"}
    caption = world.caption_for(attrs, random.Random(0), shape="star")
    assert "star" in caption and "circle" not in caption


def test_reference_split_is_stratified():
    labels = torch.arange(10).repeat(10)
    mask = stratified_reference_mask(labels, 0.2)
    assert mask.sum() == 20 and all(int((labels[mask] == c).sum()) == 2 for c in range(10))


def test_local_parquet_pairs_and_labels(tmp_path):
    import datasets

    imgs = [Image.fromarray(np.full((20, 30, 3), i * 40, dtype=np.uint8)) for i in range(4)]
    ds = datasets.Dataset.from_dict({"image": imgs, "caption": [f"a photo {i}" for i in range(4)],
                                     "label": [0, 1, 0, 1]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "caption": datasets.Value("string"),
                                                                "label": datasets.ClassLabel(names=["cat", "golden_retriever"])}))
    path = tmp_path / "data.parquet"
    ds.to_parquet(str(path))
    images, captions = load_pairs(SourceSpec(source=str(path)), image_size=16)
    assert images.shape == (4, 3, 16, 16) and captions[2] == "a photo 2"
    x, y, names = load_labelled(SourceSpec(source=str(path), classnames=("cat", "dog")), image_size=8)
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 1, 0, 1] and names == ("cat", "dog")


def test_local_imagefolder(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.random.randint(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    x, y, names = load_labelled(SourceSpec(source=str(tmp_path)), image_size=8)
    assert x.shape == (4, 3, 8, 8) and sorted(y.tolist()) == [0, 0, 1, 1] and names == ("cat", "dog")


def test_missing_local_source_is_clear():
    with pytest.raises(BenchError, match="does not exist"):
        load_pairs(SourceSpec(source="./no/such/folder"), 16)


def test_digits_are_real_and_offline():
    x, y, names = load_digits(16)
    assert x.shape == (1797, 3, 16, 16) and len(names) == 10 and set(y.tolist()) == set(range(10))
