"""Lazy image columns behave like the tensors they stand for, and decode only what is asked."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from bench_core.data.images import (ConcatImages, EncodedImages, MappedImages, OverlayImages, SubsetImages, batches,
                                    concat, subset, take)
from bench_core.data.loaders import images_to_tensor


def _encoded(n: int = 12, size: int = 20) -> tuple[EncodedImages, torch.Tensor]:
    rng = np.random.default_rng(0)
    pil = [Image.fromarray(rng.integers(0, 255, (size + 4, size, 3), dtype=np.uint8)) for _ in range(n)]
    ds = datasets.Dataset.from_dict({"image": pil, "caption": [str(i) for i in range(n)]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "caption": datasets.Value("string")}))
    return EncodedImages(ds, "image", 16), images_to_tensor(pil, 16)


def test_encoded_images_index_like_the_decoded_tensor():
    lazy, full = _encoded()
    assert lazy.shape == full.shape and len(lazy) == len(full)
    for index in (3, -1, slice(2, 9, 3), [5, 1, 5], torch.tensor([0, 11]), full[:, 0, 0, 0] > 0.5):
        assert torch.equal(lazy[index], full[index]), index
    with pytest.raises(IndexError):
        lazy[12]


def test_overlay_replaces_only_its_rows():
    lazy, full = _encoded()
    index = torch.tensor([2, 7])
    replacement = torch.zeros(2, 3, 16, 16)
    overlay = OverlayImages(lazy, index, replacement)
    expected = full.clone()
    expected[index] = replacement
    assert torch.equal(overlay[:], expected) and torch.equal(overlay[[7, 0]], expected[[7, 0]])
    on_tensor = OverlayImages(full, index, replacement)  # the in-memory world: same values as the clone
    assert torch.equal(on_tensor[torch.arange(12)], expected)


def test_subset_concat_and_mapped_compose_without_decoding():
    lazy, full = _encoded()
    idx = torch.tensor([9, 3, 4])
    assert torch.equal(SubsetImages(lazy, idx)[:], full[idx]) and torch.equal(subset(full, idx), full[idx])
    both = ConcatImages([lazy, SubsetImages(lazy, idx)])
    assert len(both) == 15 and torch.equal(both[[0, 12, 14]], torch.stack([full[0], full[9], full[4]]))
    assert isinstance(concat(full, full), torch.Tensor) and isinstance(concat(lazy, full), ConcatImages)
    doubled = MappedImages(lazy, lambda x: x * 0.5)
    assert torch.allclose(doubled[[1, 2]], full[[1, 2]] * 0.5)


def test_batches_in_workers_match_batches_in_process():
    lazy, full = _encoded()
    rows = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    here = list(batches(lazy, rows))
    workers = list(batches(lazy, rows, workers=2))
    assert all(torch.equal(a, b) and torch.equal(a, take(full, r)) for a, b, r in zip(here, workers, rows))
