"""Probe figure specs render to PNG; unknown types are a clear error."""

import pytest

from bench_core.figures import render
from bench_core.gallery import gallery_png


@pytest.mark.parametrize("spec", [
    {"type": "line", "title": "t", "xlabel": "x", "ylabel": "y", "x": [1, 2, 3],
     "series": {"CACC": [0.9, 0.8, 0.7], "ASR (no repair)": [0.5, 0.5, 0.5]}},
    {"type": "bar", "title": "t", "x": ["a", "b"], "series": {"s1": [1, 2], "s2": [2, 1]}},
    {"type": "density", "title": "t", "xlabel": "cos", "series": {"clean h0": [0.1, 0.2, 0.3], "triggered h0": [0.5, 0.6],
                                                                 "clean h1": [0.2], "triggered h1": [0.1, 0.4]}},
])
def test_render_writes_png(spec, tmp_path):
    path = render(spec, tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_figure_type(tmp_path):
    with pytest.raises(ValueError, match="unknown figure type 'pie'"):
        render({"type": "pie"}, tmp_path / "f.png")


def test_gallery(tmp_path):
    import torch

    clean = torch.rand(3, 3, 8, 8)
    path = gallery_png(clean, clean.flip(-1), tmp_path / "g.png", "title")
    assert path.read_bytes()[:4] == b"\x89PNG"
