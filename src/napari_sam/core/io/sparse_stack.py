"""Labels for a stack of planes, holding memory only where objects are.

A :class:`SparseStack` has the shape ``stack_shape + (height, width)`` (the
stack axes of an nD image, then y, x); each plane is a
:class:`~napari_sam.core.io.sparse_labels.SparseLabels` made when an object is
first written into it, so a 100 x 2048 x 2048 stack with a few objects costs
kilobytes, not the 1.6 GB of a full uint32 array. It answers the indexing
napari uses to draw a plane (integers on the stack axes, slices on y, x)
and the coordinate writes of the label editor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sam.core.io.sparse_labels import SparseLabels

DENSE_LIMIT = 64 * 1024 * 1024  # most pixels one read may return as a numpy array


class SparseStack:
    """A lazily allocated nD uint32 labels array: ``shape = stack_shape + (h, w)``."""

    def __init__(self, shape: tuple[int, ...], *, dtype: Any = np.uint32,
                 dense_limit: int = DENSE_LIMIT) -> None:
        self._shape = tuple(int(n) for n in shape)
        if len(self._shape) < 3 or min(self._shape) < 1:
            raise ValueError(f"SparseStack: needs at least 3 positive sizes, got {shape}")
        self._dtype = np.dtype(dtype)
        self.dense_limit = int(dense_limit)
        self._planes: dict[tuple[int, ...], SparseLabels] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        return int(np.prod(self._shape))

    def __len__(self) -> int:
        return self._shape[0]

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return self._shape[:-2]

    def __repr__(self) -> str:
        return f"SparseStack(shape={self._shape}, {len(self._planes)} plane(s) allocated)"

    def plane(self, index: tuple[int, ...], *, create: bool = False) -> SparseLabels | None:
        """The labels of plane ``index`` (None when nothing was written there)."""
        index = tuple(int(i) for i in index)
        found = self._planes.get(index)
        if found is None and create:
            found = self._planes[index] = SparseLabels(self._shape[-2:], dtype=self._dtype,
                                                       max_level_size=0)
        return found

    def planes(self) -> dict[tuple[int, ...], SparseLabels]:
        """The allocated planes by stack index."""
        return dict(self._planes)

    def max(self, *_: Any, **__: Any) -> Any:
        values = [p.max() for p in self._planes.values()]
        return self._dtype.type(max(values)) if values else self._dtype.type(0)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[...], dtype=dtype)

    # -- indexing ---------------------------------------------------------------------
    def _split(self, key: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim:
            raise IndexError(f"SparseStack: {len(key)} indices for {self.ndim} dimensions")
        return key[:-2], key[-2:]

    def __getitem__(self, key: Any) -> Any:
        lead, yx = self._split(key)
        arrays = [np.ndim(k) > 0 for k in lead + yx]
        if any(arrays):  # coordinates: one value per point
            coords = np.broadcast_arrays(*[np.asarray(k, dtype=np.int64) for k in lead + yx])
            out = np.zeros(coords[0].shape, dtype=self._dtype)
            for index, at in _group(coords[:-2]):
                found = self._planes.get(index)
                if found is not None:
                    out[at] = found[coords[-2][at], coords[-1][at]]
            return out
        ranges = [range(*k.indices(n)) if isinstance(k, slice) else [int(k)]
                  for k, n in zip(lead, self.stack_shape)]
        squeeze = [not isinstance(k, slice) for k in lead]
        empty = np.zeros(self._shape[-2:], dtype=self._dtype)[yx]
        count = int(np.prod([len(r) for r in ranges])) * max(1, empty.size)
        if count > self.dense_limit:
            raise MemoryError(f"SparseStack: a read of {count} pixels is larger than "
                              f"dense_limit ({self.dense_limit}); read one plane at a time")
        grid = np.array(np.meshgrid(*ranges, indexing="ij")).reshape(len(ranges), -1).T
        planes = []
        for index in grid:
            found = self._planes.get(tuple(int(i) for i in index))
            planes.append(empty.copy() if found is None else np.asarray(found[yx]))
        out = np.stack(planes).reshape(tuple(len(r) for r in ranges) + empty.shape)
        drop = tuple(0 if s else slice(None) for s in squeeze)
        return out[drop]

    def __setitem__(self, key: Any, value: Any) -> None:
        lead, yx = self._split(key)
        if any(np.ndim(k) > 0 for k in lead + yx):
            coords = np.broadcast_arrays(*[np.asarray(k, dtype=np.int64) for k in lead + yx])
            values = np.broadcast_to(np.asarray(value, dtype=self._dtype), coords[0].shape)
            for index, at in _group(coords[:-2]):
                target = self.plane(index, create=bool(values[at].any()) or
                                    index in self._planes)
                if target is not None:
                    target[coords[-2][at], coords[-1][at]] = values[at]
            return
        if not all(isinstance(k, (int, np.integer)) for k in lead):
            raise IndexError("SparseStack: write one plane at a time (integers on the "
                             "stack axes)")
        value = np.asarray(value, dtype=self._dtype)
        index = tuple(int(k) for k in lead)
        target = self.plane(index, create=bool(value.any()) or index in self._planes)
        if target is not None:
            target[yx] = value


def _group(lead: list[np.ndarray]):
    """``(stack index, boolean selection)`` for coordinates grouped by plane."""
    if not lead:
        yield (), slice(None)
        return
    flat = np.stack([np.ravel(a) for a in lead], axis=1)
    shape = lead[0].shape
    for index in np.unique(flat, axis=0):
        at = np.all(flat == index, axis=1).reshape(shape)
        yield tuple(int(i) for i in index), at
