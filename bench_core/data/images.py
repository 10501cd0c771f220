"""Image columns that decode only the rows asked for: the lazy data plane's one abstraction.

Every split's images are either a ``torch.Tensor`` (N, 3, S, S) in [0, 1] — the generated world, which stays
in memory — or an :class:`ImageColumn`, which behaves like one for what plugins and the harness do with images
(``len``, ``.shape``, indexing by an int, a slice, a list or an index tensor) but decodes per access:

- :class:`EncodedImages` keeps images encoded in a ``datasets`` Arrow table (memory-mapped) and decodes, resizes
  and centre-crops the rows asked for;
- :class:`OverlayImages` is a base column with some rows replaced (an attack's poisoned subset): only the
  replaced rows are held in memory;
- :class:`ConcatImages`, :class:`SubsetImages` and :class:`MappedImages` (a per-batch transform such as a
  defensive trigger) compose columns without decoding anything.

:func:`batches` walks a column in batches, decoding in DataLoader worker processes when asked to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Iterator, Sequence, Union

import torch

Images = Union[torch.Tensor, "ImageColumn"]


def as_rows(index, n: int) -> list[int]:
    """An int, slice, sequence, or integer / boolean tensor -> a list of row numbers in [0, n)."""
    if isinstance(index, slice):
        return list(range(n))[index]
    if isinstance(index, torch.Tensor):
        if index.dtype == torch.bool:
            if len(index) != n:
                raise IndexError(f"boolean index of length {len(index)} for {n} images")
            return index.nonzero().flatten().tolist()
        rows = index.flatten().tolist()
    elif isinstance(index, int):
        rows = [index]
    else:
        rows = [int(i) for i in index]
    out = []
    for r in rows:
        if not -n <= r < n:
            raise IndexError(f"image index {r} out of range for {n} images")
        out.append(r % n)
    return out


def take(images: Images, rows: Sequence[int]) -> torch.Tensor:
    """Rows of a tensor or a column, as a (k, 3, S, S) tensor."""
    if isinstance(images, torch.Tensor):
        return images[torch.as_tensor(list(rows), dtype=torch.long)] if len(rows) else images[:0]
    return images.rows(list(rows))


class ImageColumn(ABC):
    """N images of one size, decoded on access (see the module docstring)."""

    dtype = torch.float32

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def image_size(self) -> int: ...

    @abstractmethod
    def rows(self, rows: list[int]) -> torch.Tensor:
        """The images at ``rows`` as a (len(rows), 3, S, S) float tensor in [0, 1]."""

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), 3, self.image_size, self.image_size))

    @property
    def ndim(self) -> int:
        return 4

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __getitem__(self, index) -> torch.Tensor:
        batch = self.rows(as_rows(index, len(self)))
        return batch[0] if isinstance(index, int) else batch

    def materialize(self) -> torch.Tensor:
        """Every image decoded (small splits only: this is what the lazy plane avoids)."""
        return self.rows(list(range(len(self))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} x 3 x {self.image_size} x {self.image_size})"


class EncodedImages(ImageColumn):
    """Images kept encoded in a ``datasets.Dataset`` column (PNG / JPEG bytes or arrays), decoded per access."""

    def __init__(self, dataset, column: str, image_size: int):
        self._ds = dataset.select_columns([column])
        self._column = column
        self._size = image_size

    def __len__(self) -> int:
        return len(self._ds)

    @property
    def image_size(self) -> int:
        return self._size

    def rows(self, rows: list[int]) -> torch.Tensor:
        from bench_core.data.loaders import images_to_tensor

        return images_to_tensor(self._ds[rows][self._column] if rows else [], self._size)


class _Derived(ImageColumn):
    """A column computed from another (``base``): the same length and image size unless it says otherwise."""

    def __init__(self, base: Images):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    @property
    def image_size(self) -> int:
        return int(self.base.shape[-1])


class OverlayImages(_Derived):
    """``base`` with the rows of ``index`` replaced by ``replacement`` (held in memory; the base is not)."""

    def __init__(self, base: Images, index: torch.Tensor, replacement: torch.Tensor):
        if len(index) != len(replacement):
            raise ValueError(f"{len(index)} rows to replace but {len(replacement)} replacement images")
        super().__init__(base)
        self.index = index.long().cpu()
        self.replacement = replacement.detach().cpu()
        self._slot = {int(r): k for k, r in enumerate(self.index.tolist())}

    def rows(self, rows: list[int]) -> torch.Tensor:
        out = take(self.base, rows).clone()
        for k, r in enumerate(rows):
            slot = self._slot.get(r)
            if slot is not None:
                out[k] = self.replacement[slot].to(out.dtype)
        return out


class SubsetImages(_Derived):
    def __init__(self, base: Images, index: torch.Tensor):
        super().__init__(base)
        self.index = [int(i) for i in index.tolist()]

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, rows: list[int]) -> torch.Tensor:
        return take(self.base, [self.index[r] for r in rows])


class ConcatImages(ImageColumn):
    def __init__(self, parts: Sequence[Images]):
        self.parts = list(parts)
        self._starts = [0]
        for p in self.parts:
            self._starts.append(self._starts[-1] + len(p))

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def image_size(self) -> int:
        return int(self.parts[0].shape[-1])

    def rows(self, rows: list[int]) -> torch.Tensor:
        import bisect

        out = torch.empty(len(rows), 3, self.image_size, self.image_size)
        for k, r in enumerate(rows):
            part = bisect.bisect_right(self._starts, r) - 1
            out[k] = take(self.parts[part], [r - self._starts[part]])[0]
        return out


class MappedImages(_Derived):
    """``fn`` applied to each batch read from ``base`` (a deterministic, per-image transform)."""

    def __init__(self, base: Images, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__(base)
        self.fn = fn

    def rows(self, rows: list[int]) -> torch.Tensor:
        return self.fn(take(self.base, rows))


def concat(a: Images, b: Images) -> Images:
    """Tensors stay tensors (the in-memory world); anything lazy stays lazy."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.cat([a, b])
    return ConcatImages([a, b])


def subset(images: Images, index: torch.Tensor) -> Images:
    return images[index] if isinstance(images, torch.Tensor) else SubsetImages(images, index)


def map_images(images: Images, fn: Callable[[torch.Tensor], torch.Tensor]) -> Images:
    """``fn`` over the images: at once for a tensor, per batch read for a column (``fn`` must act on each
    image alone, so the two agree)."""
    return fn(images) if isinstance(images, torch.Tensor) else MappedImages(images, fn)


class _Batches(torch.utils.data.Dataset):
    def __init__(self, images: Images, batches: list[list[int]]):
        self.images, self.batches = images, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return take(self.images, self.batches[i])


def batches(images: Images, batch_rows: list[list[int]], workers: int = 0, pin_memory: bool = False
            ) -> Iterator[torch.Tensor]:
    """The images of each list of rows in ``batch_rows``, in order. A tensor is sliced in this process; a
    column is decoded in ``workers`` DataLoader worker processes (0: in this process)."""
    if isinstance(images, torch.Tensor) or workers == 0:
        for rows in batch_rows:
            batch = take(images, rows)
            yield batch.pin_memory() if pin_memory else batch
        return
    loader = torch.utils.data.DataLoader(_Batches(images, batch_rows), batch_size=None, shuffle=False,
                                         num_workers=workers, pin_memory=pin_memory, persistent_workers=False)
    yield from loader
