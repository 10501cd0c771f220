"""The candidate descriptions the ``textspan`` probe chooses from.

:func:`text_pool` returns a de-duplicated tuple of short phrases. It always contains every class name ("a
{class}", "a photo of a {class}") and :data:`GENERIC_DESCRIPTIONS` (trigger-like and generic image
properties). When every class name belongs to the generated world (``bench_core.data.world.CLASSES``) it
adds the world's vocabulary: every colour, location, size and texture, in phrases like those of the world's
captions. Phrases stay short because the default text tower's context is 16 tokens.
"""

from __future__ import annotations

from typing import Sequence

from bench_core.data import scene, world

GENERIC_DESCRIPTIONS: tuple[str, ...] = (
    "a small square patch", "a checkerboard pattern", "random noise", "a faint overlay pattern",
    "a blurry image", "high-frequency noise", "a bright corner", "a sticker in the corner",
    "a black and white pattern", "a colorful noise pattern", "a grid of dots", "a pixelated image",
    "a dark image", "a bright image", "a low contrast image", "a close-up photo", "a simple drawing",
)
"""Descriptions of trigger-like patterns (patches, noise, overlays) and of generic image properties."""


def class_phrases(classnames: Sequence[str]) -> list[str]:
    return [p for name in classnames for p in (f"a {name}", f"a photo of a {name}")]


def world_phrases() -> list[str]:
    """The generated world's attribute vocabulary, one or two phrases per value."""
    out = [p for c in world.COLORS for p in (f"a photo of a {c} shape", f"something {c}")]
    out += [f"an object in the {loc}" for loc in world.LOCATIONS]
    out += [f"a {size} object" for size in world.SIZES]
    out += [p for t in dict.fromkeys(world.TEXTURES + scene.TEXTURES) for p in (f"a {t} texture", f"a {t} background")]
    return out


def is_world(classnames: Sequence[str]) -> bool:
    """True when every class name is one of the generated worlds' classes (the world's shapes, or the scene
    world's colour-shape pairs, which share its vocabulary)."""
    return bool(classnames) and set(classnames) <= set(world.CLASSES) | set(scene.CLASSES)


def text_pool(classnames: Sequence[str]) -> tuple[str, ...]:
    """Class phrases, the world's vocabulary when the classes are the world's, and the generic descriptions."""
    texts = class_phrases(classnames) + (world_phrases() if is_world(classnames) else [])
    return tuple(dict.fromkeys(texts + list(GENERIC_DESCRIPTIONS)))
