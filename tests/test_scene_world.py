"""The scene world: deterministic chunked generation, lazy columns over the Arrow file, class-naming captions."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bench_core.data import scene
from bench_core.data.bundle import DataBundle
from bench_core.suite import SceneData

SMALL = scene.SceneConfig(image_size=16, n_pretrain=scene.CHUNK + 300, n_finetune=40, n_test=160, n_heldout=80,
                          n_retrieval=40)


def _images(batch) -> np.ndarray:
    column = batch.column("image")
    return np.frombuffer(column.buffers()[1], dtype=np.uint8).reshape(len(column), 16, 16, 3)


def test_classes_are_colour_shape_pairs():
    assert len(scene.CLASSES) == 80 and scene.CLASSES[0] == "red circle"
    assert len(set(scene.CLASSES)) == 80


def test_chunks_are_deterministic_and_differ_between_splits():
    a, b = scene.generate_chunk(SMALL, "test", 0), scene.generate_chunk(SMALL, "test", 0)
    assert np.array_equal(_images(a), _images(b)) and a.column("caption").equals(b.column("caption"))
    other = scene.generate_chunk(SMALL, "heldout", 0)
    assert not np.array_equal(_images(a)[:80], _images(other)[:80])


def test_balanced_splits_cycle_through_classes_and_captions_name_them():
    batch = scene.generate_chunk(SMALL, "test", 0)
    labels = batch.column("label").to_pylist()
    assert labels[:80] == list(range(80))
    captions, colors = batch.column("caption").to_pylist(), batch.column("color").to_pylist()
    for label, caption, color in zip(labels, captions, colors):
        shape = scene.SHAPES[label // len(scene.COLORS)]
        assert shape in caption and color == list(scene.COLORS)[label % len(scene.COLORS)]


def test_class_caption_names_colour_and_shape():
    rng = random.Random(0)
    for cls in (0, 17, 79):
        assert scene.CLASSES[cls] in scene.class_caption(cls, None, rng)


def test_split_file_is_written_once_and_read_lazily(tmp_path):
    table = scene.open_split(SMALL, "pretrain", workers=1)
    path = scene.split_path(SMALL, "pretrain")
    assert path.is_file() and scene.is_whole(SMALL, "pretrain", path)
    images = scene.ArrowImages(table, 16)
    assert len(images) == SMALL.n_pretrain and images.shape == (SMALL.n_pretrain, 3, 16, 16)
    rows = [5, scene.CHUNK + 7, 2, scene.CHUNK + 299]  # across the two record batches, unordered
    first = _images(scene.generate_chunk(SMALL, "pretrain", 0))
    second = _images(scene.generate_chunk(SMALL, "pretrain", 1))
    expected = np.stack([first[5], second[7], first[2], second[299]])
    got = (images[rows] * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, expected)
    captions = scene.ArrowStrings(table.column("caption"))
    assert captions[scene.CHUNK + 7] == scene.generate_chunk(SMALL, "pretrain", 1).column("caption")[7].as_py()
    assert captions.take([1, 0]) == [captions[1], captions[0]] and len(captions[:3]) == 3
    with pytest.raises(IndexError):
        captions[SMALL.n_pretrain]


def test_process_workers_write_the_same_bytes(tmp_path):
    one, two = tmp_path / "one.arrow", tmp_path / "two.arrow"
    scene.write_split(SMALL, "pretrain", one, workers=1)
    scene.write_split(SMALL, "pretrain", two, workers=2)
    assert one.read_bytes() == two.read_bytes()


def test_incomplete_file_is_regenerated():
    scene.open_split(SMALL, "test", workers=1)
    path = scene.split_path(SMALL, "test")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # a truncated file: the manifest's byte count no longer matches
    assert not scene.is_whole(SMALL, "test", path)
    scene.open_split(SMALL, "test", workers=1)
    assert path.read_bytes() == whole


def test_scene_source_keeps_pretraining_lazy():
    data = DataBundle(SceneData(**SMALL.model_dump()), 16)
    pretrain = data.pretrain
    assert isinstance(pretrain.captions, scene.ArrowStrings) and pretrain.attrs is None
    assert not isinstance(pretrain.images, torch.Tensor)
    assert isinstance(data.finetune.captions, tuple) and data.finetune.attrs is not None
    assert data.classnames == scene.CLASSES and len(data.reference) == 80  # at least one per class: 1 of each class's 2


def test_an_option_at_its_default_moves_no_key():
    """Options added to the scene world later (``distractors``) leave the keys of worlds that do not use them
    alone: the world's files, the clean model's key and every cell key's config hash."""
    from bench_core.keys import clean_model_key, suite_config_hash
    from bench_core.models import ModelSpec
    from bench_core.training import TrainConfig

    plain, explicit = SceneData(), SceneData(distractors="any")
    binding = SceneData(distractors="binding")
    assert "distractors" not in plain.identity() and scene.world_key(plain) == scene.world_key(explicit)
    assert scene.world_key(binding) != scene.world_key(plain)
    model, train = ModelSpec(), TrainConfig()
    assert clean_model_key(model, plain, train) == clean_model_key(model, explicit, train)
    assert clean_model_key(model, binding, train) != clean_model_key(model, plain, train)
    assert suite_config_hash(model, plain, train, train, None) == suite_config_hash(model, explicit, train, train, None)
    assert suite_config_hash(model, binding, train, train, None) != suite_config_hash(model, plain, train, train, None)


def test_binding_distractors_share_the_main_objects_colour_or_shape():
    config = SMALL.model_copy(update={"distractors": "binding"})
    rng, prng = np.random.default_rng(0), random.Random(0)
    for label in range(0, 80, 7):
        attrs = scene.draw_attributes(label, config, rng, prng)
        for shape, color, _, size in attrs["distractors"]:
            assert (shape == attrs["shape"]) != (color == attrs["color"])
            assert scene.BINDING_DISTRACTOR_SIZE[0] <= size <= scene.BINDING_DISTRACTOR_SIZE[1]
