"""SparseLabels: numpy semantics on awkward shapes, lazy chunks, an exact pyramid."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.core.io.sparse_labels import SparseLabels


def _assert_pyramid(store: SparseLabels, ref: np.ndarray) -> None:
    for k, level in enumerate(store.levels):
        assert np.array_equal(np.asarray(level), ref[::2 ** k, ::2 ** k]), f"level {k}"


@pytest.mark.parametrize("shape,chunk", [((203, 317), 32), ((64, 64), 64), ((1, 90), 7)])
def test_random_writes_match_numpy(shape, chunk):
    rng = np.random.default_rng(0)
    store = SparseLabels(shape, chunk=chunk, max_level_size=20)
    ref = np.zeros(shape, dtype=np.uint32)
    h, w = shape
    for step in range(60):
        if step % 3 == 0:  # a box write, array or scalar value
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            y1, x1 = rng.integers(y0, h + 1), rng.integers(x0, w + 1)
            value = (rng.integers(0, 4, (y1 - y0, x1 - x0)) if step % 2
                     else rng.integers(0, 5))
            store[y0:y1, x0:x1] = value
            ref[y0:y1, x0:x1] = value
        else:  # coordinates, possibly repeated, as LabelEditor writes them
            n = int(rng.integers(0, 200))
            rows, cols = rng.integers(0, h, n), rng.integers(0, w, n)
            values = rng.integers(0, 9, n) if step % 2 else int(rng.integers(0, 9))
            order = np.unique(rows * w + cols, return_index=True)[1]  # numpy: one value per pixel
            rows, cols = rows[order], cols[order]
            values = values[order] if np.ndim(values) else values
            store[rows, cols] = values
            ref[rows, cols] = values
            assert np.array_equal(store[rows, cols], ref[rows, cols])
        assert np.array_equal(np.asarray(store), ref)
    _assert_pyramid(store, ref)
    assert store.max() == ref.max() and np.max(store) == ref.max()
    y0, x0 = h // 3, w // 4
    assert np.array_equal(store[y0:, x0:-1], ref[y0:, x0:-1])
    assert np.array_equal(store[::3, 1::2], ref[::3, 1::2])
    assert store[h - 1, w - 1] == ref[-1, -1] and store[-1, -1] == ref[-1, -1]
    assert np.array_equal(store[h // 2], ref[h // 2])
    assert np.array_equal(store[:, w // 2], ref[:, w // 2])
    assert np.array_equal(store[y0:y0 + 5], ref[y0:y0 + 5])
    assert np.array_equal(store[...], ref)
    assert np.array_equal(store.to_dask(chunks=50)[y0:].compute(), ref[y0:])


def test_only_written_chunks_are_allocated():
    store = SparseLabels((50_000, 60_000), chunk=512)
    assert store.allocated_bytes == 0 and len(store.levels) == 6  # 50,000 / 2**5 < 2048
    assert store.levels[-1].shape == (1563, 1875)
    store[100:110, 600:610] = 0  # zeros allocate nothing
    assert store.allocated_bytes == 0
    rows, cols = np.nonzero(np.ones((300, 300), dtype=bool))
    store[rows + 20_480, cols + 30_720] = 7  # inside one chunk at every level
    assert store.n_chunks == 1
    assert store.allocated_bytes <= len(store.levels) * 512 * 512 * 4
    store[511:513, 511:513] = 3  # a corner shared by four chunks
    assert store.n_chunks == 5
    assert store.max() == 7 and store[20_480, 30_720] == 7 and store[0, 0] == 0
    assert store[511:513, 511:513].tolist() == [[3, 3], [3, 3]]
    with pytest.raises(MemoryError):
        np.asarray(store)
    with pytest.raises(MemoryError):
        store[:, :20_000]


def test_pyramid_follows_writes_and_undo():
    rng = np.random.default_rng(3)
    shape = (301, 257)
    store = SparseLabels(shape, chunk=40, max_level_size=30)
    ref = np.zeros(shape, dtype=np.uint32)
    history = []
    for label in range(1, 8):
        y, x = rng.integers(0, 260), rng.integers(0, 220)
        mask = rng.random((41, 37)) < 0.7
        rows, cols = np.nonzero(mask)
        rows, cols = rows + y, cols + x
        previous = store[rows, cols].copy()
        free = previous == 0
        rows, cols, previous = rows[free], cols[free], previous[free]
        store[rows, cols] = label
        ref[rows, cols] = label
        history.append((rows, cols, previous))
        _assert_pyramid(store, ref)
    while history:
        rows, cols, previous = history.pop()
        store[rows, cols] = previous
        ref[rows, cols] = previous
        _assert_pyramid(store, ref)
    assert not ref.any() and store.max() == 0
    assert [level.shape for level in store.levels] == [
        (301, 257), (151, 129), (76, 65), (38, 33), (19, 17)]


def test_bad_indices_are_refused():
    store = SparseLabels((10, 10))
    with pytest.raises(IndexError):
        store[np.array([1, 2]), 3:5]
    with pytest.raises(IndexError):
        store[np.array([10]), np.array([0])]
    with pytest.raises(IndexError):
        store[np.ones((10, 10), dtype=bool)]
    with pytest.raises(IndexError):
        store[::2, :] = 1
    with pytest.raises(TypeError):
        SparseLabels((4, 4), dtype=np.float32)
    assert store.levels == [store]  # already small: no pyramid
