"""A 2D labels array whose memory follows the labelled area, with a pyramid.

:class:`SparseLabels` is an (h, w) integer array stored in square chunks that
are allocated only when a non-zero value is written into them, so a
50,000 x 50,000 labels raster holding a few objects costs a few megabytes, not
the 10 GB of a full uint32 array. It indexes like numpy for what labels
editing and export need: ``a[y0:y1, x0:x1]`` (read and write, scalar or array
values), ``a[rows, cols]`` with integer coordinate arrays (read and write, as
``np.nonzero`` gives them), integers, and ``np.asarray(a)`` for arrays small
enough to hold (``dense_limit`` pixels).

Every write is repeated into a factor-2 nearest-neighbour child (pixel (r, c)
of the child is pixel (2r, 2c) of its parent), and so on until a level fits in
``max_level_size``; :attr:`SparseLabels.levels` is thus an exact pyramid,
level ``k`` equal to ``a[::2**k, ::2**k]`` at any time, which a viewer can show
as multiscale data without reading the full-resolution level as a whole.
No napari or Qt here.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

DEFAULT_CHUNK = 512
DEFAULT_LEVEL_SIZE = 2048
DEFAULT_DENSE_LIMIT = 8192 * 8192  # pixels np.asarray() may materialise


class SparseLabels:
    """(h, w) labels in lazily allocated ``chunk`` x ``chunk`` blocks, plus a pyramid.

    ``max_level_size``: the pyramid halves the level until both sides are at
    most this (no pyramid for an array that already fits; 0 disables it).
    ``dense_limit``: the most pixels a whole-array read (``np.asarray``) may
    produce; larger reads raise ``MemoryError`` instead of exhausting memory.
    """

    def __init__(self, shape: tuple[int, int], *, dtype: Any = np.uint32,
                 chunk: int = DEFAULT_CHUNK, max_level_size: int = DEFAULT_LEVEL_SIZE,
                 dense_limit: int = DEFAULT_DENSE_LIMIT) -> None:
        height, width = (int(v) for v in shape)
        if height < 1 or width < 1 or chunk < 1:
            raise ValueError(f"SparseLabels: bad shape {shape} or chunk {chunk}")
        self._shape = (height, width)
        self._dtype = np.dtype(dtype)
        if not np.issubdtype(self._dtype, np.integer):
            raise TypeError(f"SparseLabels: labels must be integers, got {self._dtype}")
        self.chunk = int(chunk)
        self.dense_limit = int(dense_limit)
        self._chunks: dict[tuple[int, int], np.ndarray] = {}
        self._child: SparseLabels | None = None
        if 0 < max_level_size < max(height, width):
            self._child = SparseLabels(((height + 1) // 2, (width + 1) // 2), dtype=dtype,
                                       chunk=chunk, max_level_size=max_level_size,
                                       dense_limit=dense_limit)

    # -- array protocol -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return 2

    @property
    def size(self) -> int:
        return self._shape[0] * self._shape[1]

    def __len__(self) -> int:
        return self._shape[0]

    def __repr__(self) -> str:
        return (f"SparseLabels(shape={self._shape}, dtype={self._dtype}, chunk={self.chunk}, "
                f"{len(self._chunks)} chunk(s) allocated, {len(self.levels)} level(s))")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self.size > self.dense_limit:
            raise MemoryError(f"SparseLabels: refusing to materialise {self._shape} as one "
                              f"array (more than {self.dense_limit} pixels); read windows")
        out = self._read_box(0, self._shape[0], 0, self._shape[1])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> Any:
        kind, parsed = self._parse(key)
        if kind == "coords":
            rows, cols = parsed
            return self._read_coords(rows, cols)
        (y0, y1, ystep, ysqueeze), (x0, x1, xstep, xsqueeze) = parsed
        if (y1 - y0) * (x1 - x0) > self.dense_limit:
            raise MemoryError(f"SparseLabels: window {y1 - y0} x {x1 - x0} is larger than "
                              f"dense_limit ({self.dense_limit} pixels)")
        out = self._read_box(y0, y1, x0, x1)[::ystep, ::xstep]
        if ysqueeze and xsqueeze:
            return out[0, 0]
        if ysqueeze or xsqueeze:
            return out[0] if ysqueeze else out[:, 0]
        return out

    def __setitem__(self, key: Any, value: Any) -> None:
        kind, parsed = self._parse(key)
        if kind == "coords":
            rows, cols = parsed
            values = np.broadcast_to(np.asarray(value, dtype=self._dtype), rows.shape)
            self._write_coords(rows.ravel(), cols.ravel(), values.ravel())
            return
        (y0, y1, ystep, ysqueeze), (x0, x1, xstep, xsqueeze) = parsed
        if (ystep, xstep) != (1, 1):
            raise IndexError("SparseLabels: strided writes are not supported")
        shape = (y1 - y0, x1 - x0)
        value = np.asarray(value, dtype=self._dtype)
        if value.ndim and (ysqueeze or xsqueeze):  # a[r, x0:x1] = row (or a column)
            value = value[None, :] if ysqueeze else value[:, None]
        self._write_box(y0, x0, np.broadcast_to(value, shape) if value.ndim else value, shape)

    def max(self, axis: Any = None, out: Any = None, keepdims: bool = False,
            **_: Any) -> Any:
        """The largest label (0 when empty), from the allocated chunks only."""
        if axis is not None or out is not None or keepdims:
            raise NotImplementedError("SparseLabels.max: only the whole-array maximum")
        values = [c.max() for c in self._chunks.values()]
        return self._dtype.type(max(values)) if values else self._dtype.type(0)

    def to_dask(self, chunks: int | None = None) -> Any:
        """This level as a lazy (h, w) dask array (``chunks``: default four store chunks).

        For code that reads whole rows of a very wide raster (writers, vectorising):
        each dask chunk is read on its own, within ``dense_limit``.
        """
        side = int(chunks or 4 * self.chunk)
        array = da.from_array(self, chunks=(side, side), name=False, asarray=True, fancy=False,
                              lock=False, meta=np.empty((0, 0), dtype=self._dtype))
        # lets writers find the store (and skip its empty windows) behind this exact
        # array; any dask operation on it makes a new array without the attribute
        array._sparse_labels_store = self
        return array

    # -- storage facts --------------------------------------------------------------------
    @property
    def levels(self) -> list[SparseLabels]:
        """This array and its factor-2 nearest-neighbour downsamplings, largest first."""
        out, level = [], self
        while level is not None:
            out.append(level)
            level = level._child
        return out

    @property
    def n_chunks(self) -> int:
        """Chunks allocated at this level."""
        return len(self._chunks)

    @property
    def allocated_bytes(self) -> int:
        """Bytes held by the chunks of every level."""
        return sum(c.nbytes for level in self.levels for c in level._chunks.values())

    def chunk_windows(self) -> list[tuple[int, int, int, int]]:
        """``(y0, x0, h, w)`` of the allocated chunks of this level, in row order."""
        c, (h, w) = self.chunk, self._shape
        return [(i * c, j * c, min(c, h - i * c), min(c, w - j * c))
                for i, j in sorted(self._chunks)]

    def any_nonzero(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        """Whether the window ``[y0:y1, x0:x1]`` of this level holds a non-zero value.

        Looks only at the allocated chunks overlapping the window (an
        unallocated chunk is all zeros), so an empty window costs a few dict
        look-ups, whatever its size.
        """
        h, w = self._shape
        y0, y1, x0, x1 = max(0, y0), min(h, y1), max(0, x0), min(w, x1)
        if y1 <= y0 or x1 <= x0 or not self._chunks:
            return False
        c = self.chunk
        for i, j in self._allocated_in(y0, y1, x0, x1):
            ya, yb = max(y0, i * c), min(y1, (i + 1) * c)
            xa, xb = max(x0, j * c), min(x1, (j + 1) * c)
            if self._chunks[(i, j)][ya - i * c:yb - i * c, xa - j * c:xb - j * c].any():
                return True
        return False

    # -- indexing -------------------------------------------------------------------------
    def _parse(self, key: Any) -> tuple[str, Any]:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (2 - len(key) + 1) + key[at + 1:]
        if len(key) > 2:
            raise IndexError(f"SparseLabels: too many indices for a 2-D array: {key!r}")
        key = key + (slice(None),) * (2 - len(key))
        arrays = [_is_index_array(k) for k in key]
        if all(arrays):
            rows, cols = np.broadcast_arrays(np.asarray(key[0], dtype=np.int64),
                                             np.asarray(key[1], dtype=np.int64))
            return "coords", self._check_coords(rows, cols)
        if any(arrays):
            raise IndexError("SparseLabels: index with two coordinate arrays or with "
                             "integers and slices, not a mix")
        return "box", tuple(_axis(k, n) for k, n in zip(key, self._shape, strict=True))

    def _check_coords(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self._shape
        rows = np.where(rows < 0, rows + h, rows)
        cols = np.where(cols < 0, cols + w, cols)
        if rows.size and (rows.min() < 0 or rows.max() >= h or cols.min() < 0
                          or cols.max() >= w):
            raise IndexError(f"SparseLabels: coordinates outside shape {self._shape}")
        return rows, cols

    def _chunk_range(self, lo: int, hi: int) -> range:
        return range(lo // self.chunk, (hi - 1) // self.chunk + 1) if hi > lo else range(0)

    def _allocated_in(self, y0: int, y1: int, x0: int, x1: int) -> list[tuple[int, int]]:
        """Keys of the allocated chunks overlapping ``[y0:y1, x0:x1]`` (scanning whichever
        is smaller: the window's chunk grid or the allocated chunks)."""
        ci, cj = self._chunk_range(y0, y1), self._chunk_range(x0, x1)
        if len(ci) * len(cj) > len(self._chunks):
            return [k for k in self._chunks if k[0] in ci and k[1] in cj]
        return [(i, j) for i in ci for j in cj if (i, j) in self._chunks]

    def _read_box(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        out = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), dtype=self._dtype)
        c = self.chunk
        for i, j in self._allocated_in(y0, y1, x0, x1):
            block = self._chunks[(i, j)]
            ya, yb = max(y0, i * c), min(y1, (i + 1) * c)
            xa, xb = max(x0, j * c), min(x1, (j + 1) * c)
            out[ya - y0:yb - y0, xa - x0:xb - x0] = block[ya - i * c:yb - i * c,
                                                          xa - j * c:xb - j * c]
        return out

    def _new_chunk(self, i: int, j: int) -> np.ndarray:
        c, (h, w) = self.chunk, self._shape
        block = np.zeros((min(c, h - i * c), min(c, w - j * c)), dtype=self._dtype)
        self._chunks[(i, j)] = block
        return block

    def _write_box(self, y0: int, x0: int, value: np.ndarray, shape: tuple[int, int]) -> None:
        """Write ``value`` (a 0-d value or an array of ``shape``) at ``(y0, x0)``."""
        y1, x1 = y0 + shape[0], x0 + shape[1]
        c, scalar = self.chunk, value.ndim == 0
        for i in self._chunk_range(y0, y1):
            for j in self._chunk_range(x0, x1):
                ya, yb = max(y0, i * c), min(y1, (i + 1) * c)
                xa, xb = max(x0, j * c), min(x1, (j + 1) * c)
                part = value if scalar else value[ya - y0:yb - y0, xa - x0:xb - x0]
                block = self._chunks.get((i, j))
                if block is None:
                    if not part.any():
                        continue
                    block = self._new_chunk(i, j)
                block[ya - i * c:yb - i * c, xa - j * c:xb - j * c] = part
        if self._child is not None and shape[0] > 0 and shape[1] > 0:
            ey, ex = y0 % 2, x0 % 2  # offset of the first even row/column in the box
            sub = value if scalar else value[ey::2, ex::2]
            sub_shape = ((shape[0] - ey + 1) // 2, (shape[1] - ex + 1) // 2)
            if sub_shape[0] > 0 and sub_shape[1] > 0:
                self._child._write_box((y0 + ey) // 2, (x0 + ex) // 2, sub, sub_shape)

    def _groups(self, rows: np.ndarray, cols: np.ndarray):
        """``(chunk key, positions)`` for coordinates grouped by chunk."""
        c = self.chunk
        n_cols = (self._shape[1] + c - 1) // c
        keys = (rows // c) * n_cols + cols // c
        order = np.argsort(keys, kind="stable")
        unique, starts = np.unique(keys[order], return_index=True)
        bounds = np.r_[starts, len(order)]
        for n, key in enumerate(unique):
            yield (int(key) // n_cols, int(key) % n_cols), order[bounds[n]:bounds[n + 1]]

    def _read_coords(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.zeros(rows.shape, dtype=self._dtype)
        flat_rows, flat_cols, flat_out = rows.ravel(), cols.ravel(), out.reshape(-1)
        c = self.chunk
        for (i, j), at in self._groups(flat_rows, flat_cols):
            block = self._chunks.get((i, j))
            if block is not None:
                flat_out[at] = block[flat_rows[at] - i * c, flat_cols[at] - j * c]
        return out

    def _write_coords(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        c = self.chunk
        for (i, j), at in self._groups(rows, cols):
            block = self._chunks.get((i, j))
            if block is None:
                if not values[at].any():
                    continue
                block = self._new_chunk(i, j)
            block[rows[at] - i * c, cols[at] - j * c] = values[at]
        if self._child is not None and rows.size:
            even = (rows % 2 == 0) & (cols % 2 == 0)
            if even.any():
                self._child._write_coords(rows[even] // 2, cols[even] // 2, values[even])


def sparse_store(labels: Any) -> SparseLabels | None:
    """The :class:`SparseLabels` that ``labels`` is, or that the dask array
    ``labels`` was made from by :meth:`SparseLabels.to_dask` (unchanged); else None.

    Writers use it to skip windows the store knows are empty.
    """
    if isinstance(labels, SparseLabels):
        return labels
    store = getattr(labels, "_sparse_labels_store", None)
    if isinstance(store, SparseLabels) and tuple(labels.shape) == store.shape:
        return store
    return None


def _is_index_array(key: Any) -> bool:
    if isinstance(key, (slice, int, np.integer)) or key is None:
        return False
    array = np.asarray(key)
    if array.dtype == bool:
        raise IndexError("SparseLabels: boolean masks are not supported; use np.nonzero")
    return array.ndim > 0 and np.issubdtype(array.dtype, np.integer) or (
        array.ndim > 0 and array.size == 0)


def _axis(key: Any, n: int) -> tuple[int, int, int, bool]:
    """``(start, stop, step, squeeze)`` of one axis' integer or slice index."""
    if isinstance(key, np.ndarray) and key.ndim == 0 and np.issubdtype(key.dtype, np.integer):
        key = int(key)
    if isinstance(key, (int, np.integer)):
        i = int(key) + (n if key < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"SparseLabels: index {int(key)} out of range for size {n}")
        return i, i + 1, 1, True
    if not isinstance(key, slice):
        raise IndexError(f"SparseLabels: unsupported index {key!r}")
    start, stop, step = key.indices(n)
    if step < 1:
        raise IndexError("SparseLabels: only positive slice steps are supported")
    return start, max(start, stop), step, False
