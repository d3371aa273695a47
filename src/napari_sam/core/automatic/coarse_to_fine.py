"""Coarse-to-fine prompt points: decode a sparse part of the point grid first, then only
the points that no accepted mask covers and where the image has content.

The full grid of :mod:`napari_sam.core.automatic.point_grid` (``points_per_side`` points
per tile side, spacing ``s``) is split into ``levels`` nested lattices by the
points' *global* grid indices ``(i, j)``: level 0 takes every ``2**(levels-1)``-th
point in each direction, level 1 adds the points that make every
``2**(levels-2)``-th, ..., the last level adds the rest. So the lattices are
the same in every tile, each level doubles the density, and every decoded
point is a point of the full grid.

Per tile (:func:`decode_coarse_to_fine`): the level-0 points are decoded
wherever the raster is valid; a point of a later level is decoded only when

- no mask accepted so far in this tile covers it (masks that passed the
  decoder's filters, NMS and the tile's edge / area filters: the objects the
  tile will publish, partials to be stitched included), and
- the image has *content* near it that no accepted mask explains yet: an
  edge within ``s`` px either way (the gradient of the smoothed image well
  above its median over the tile, the noise and texture floor;
  :func:`edge_map`) that is not on the outline of an accepted mask (within
  ``EXPLAINED_MARGIN`` px of it; :func:`explained_edges`). A point in smooth
  background far from any edge would give the background the level-0
  points already probed; a point whose only nearby edge is the outline of
  an object already found would give that object again, or the background
  beside it; an object no mask covers yet has edges of its own, so the
  points near it are decoded. On ``benchmarks/bench_recall.py``'s 2048 px
  mosaic, ignoring the explained edges decoded 9% more points at full
  resolution with one scale (2006 against 1843), and 20% more with the
  outlines of the coarser scales' objects explained too (2006 against
  1677; ``decode._tile_works``), for the same recall.

At full resolution the finest level places its points by content instead
(:mod:`napari_sam.core.automatic.blobs`, the work's ``targets``): each point
moves to the strongest blob centre of its grid cell, or is not decoded when
the cell has none; the coverage and edge tests are then made at the blob.
A grid point of that level hits a small object only by chance; the blob is
where one is. The coarse scales skip the level
(:mod:`napari_sam.core.automatic.scale_passes`). On the 2048 px mosaic of
``benchmarks/bench_recall.py`` with the default scales, the two together
decoded 1447 points instead of 2521 and found more objects (recall 0.296
against 0.287; objects 10-32 px across 0.138 against 0.069).

A covered point is still decoded when its colour disagrees with the mask that
covers it (:func:`colour_field`, ``colours``): a mask seeded on a background
or a large region often spreads over a small object of another colour inside
it (the decoder's mask of a point beside the object), and without this the
object gets no point of its own. The mask's colour is read at its prompt
point (inside it); a covered point is skipped only when some mask covering
it has a prompt colour within ``COLOUR_TOLERANCE`` of its own in every band.

A covered point of the finest level is still decoded when every mask that covers it
is doubtful (predicted IoU under ``cover_iou``, ``SegmentConfig.cover_iou``, 0.7): the full grid
puts several points in a 32-128 px object and keeps the best of their masks, the
coarse levels one, and where that one answer is doubtful (a mask twice the
object, or over it and its neighbour) the finer points are where the others
pay. On the 4096 px mosaic of ``benchmarks/bench_recall.py`` (shipped
``sam_lite0``, default flags) the default found 0.681 of the 32-128 px objects
against the full grid's 0.816, and of the 28 the full grid found and it did not,
26 had a point decoded at most once or never, under masks scored 0.35-0.6; with
the rule at the finest level: recall 0.557 -> 0.595 (full grid 0.588), decoder
calls 3559 -> 4072 (full grid 16384). Applied at the middle level too it cost
4303 calls for the same recall, and at the middle level alone it gained little
(0.561, 3783 calls).

The masks of all levels then go through one box NMS (by predicted IoU), the
same step that ends the paper's generator on one crop, so the filters, NMS
and records are the generator's; only the prompts differ. Objects nested
inside an accepted mask with the mask's own colour (told from it by texture
alone) get no point of their own at the finer levels: the price of skipping
covered points.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from scipy import ndimage


class TileCandidates(list):
    """A tile's candidates (a list) and ``n_decoded``: how many points were decoded for them."""

    def __init__(self, items=(), *, n_decoded: int = 0) -> None:
        super().__init__(items)
        self.n_decoded = int(n_decoded)


def lattice_offsets(levels: int) -> list[int]:
    """Residue ``r_k`` of level ``k``'s cumulative lattice ``{i : i % 2**(levels-1-k) == r_k}``.

    The residues nest (``r_k % stride_{k+1} == r_{k+1}``), and each is as close
    as that allows to the centre of its block of ``stride`` points.
    """
    offsets = [0]  # stride 1: every index
    for k in range(1, levels):
        stride = 2 ** k
        finer = offsets[-1]
        choices = [finer + m * (stride // 2) for m in range(2)]
        centre = (stride - 1) / 2.0
        offsets.append(min(choices, key=lambda r: (abs(r - centre), r)))
    return offsets[::-1]  # level 0 (coarsest) first


def point_levels(points_xy: np.ndarray, spacing: float, levels: int) -> np.ndarray:
    """The level (0 = coarsest) at which each full-grid point is first offered.

    ``points_xy`` (N, 2) raster pixels on the global grid ``(i + 0.5) * spacing``;
    returns (N,) int64 in ``[0, levels)``.
    """
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    index = np.rint(pts / float(spacing) - 0.5).astype(np.int64)
    out = np.full(len(pts), levels - 1, dtype=np.int64)
    for k, r in enumerate(lattice_offsets(levels)[:-1]):
        stride = 2 ** (levels - 1 - k)
        on = (index[:, 0] % stride == r) & (index[:, 1] % stride == r)
        out = np.where(on & (out > k), k, out)
    return out


EXPLAINED_MARGIN = 5
"""An edge pixel this close (px) to an accepted mask's outline is that mask's edge: the
edge map's smoothing (3 sigma) plus a pixel or two of the mask's own error."""


def usable_bands(data: np.ndarray, valid: np.ndarray | None, reach: int
                 ) -> tuple[np.ndarray, Iterator[tuple[np.ndarray, float, float]]]:
    """``(usable (H, W) bool, bands)``: the pixels at least ``reach`` px from nodata, and
    each band of ``data`` ((H, W, C) or (H, W)) that varies there as ``(values (H, W)
    float32 with non-finite pixels set to ``low``, low, high)``, its range over them."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[..., None]
    if valid is None:
        usable = np.ones(arr.shape[:2], dtype=bool)
    elif reach > 0:
        usable = ~ndimage.binary_dilation(~valid, iterations=reach)
    else:  # (scipy dilates until nothing changes for iterations=0)
        usable = np.asarray(valid, dtype=bool).copy()

    def bands():
        for band in range(arr.shape[2]):
            values = arr[..., band].astype(np.float32)
            finite = np.isfinite(values)
            good = values[finite & usable]
            if good.size == 0:
                continue
            low, high = float(good.min()), float(good.max())
            if high > low:
                yield np.where(finite, values, low), low, high

    return usable, bands()


def edge_map(data: np.ndarray, valid: np.ndarray | None, *, edge_factor: float = 4.0,
             min_contrast: float = 0.02, smooth: float = 1.5) -> np.ndarray:
    """Where the image has an edge: (H, W) bool.

    ``data`` (H, W, C) or (H, W) tile pixels; ``valid`` (H, W) bool or None.
    Edges: the gradient magnitude of each band smoothed by a Gaussian of
    ``smooth`` px, above ``edge_factor`` times its median over the tile (the
    noise and texture floor) and above ``min_contrast`` of the band's value
    range per pixel. Nodata and the border of nodata are no edge.
    """
    usable, bands = usable_bands(data, valid, int(np.ceil(3 * smooth)) + 1)
    edges = np.zeros(usable.shape, dtype=bool)
    for values, low, high in bands:
        smooth_band = ndimage.gaussian_filter(values, smooth)
        magnitude = np.hypot(ndimage.sobel(smooth_band, 0), ndimage.sobel(smooth_band, 1)) / 8.0
        floor = float(np.median(magnitude[usable])) if usable.any() else 0.0
        edges |= magnitude > max(edge_factor * floor, min_contrast * (high - low))
    return edges & usable


def edges_near(edges: np.ndarray, points_yx: np.ndarray, window: int) -> np.ndarray:
    """Whether any pixel of ``edges`` (H, W) bool lies in the ``window`` px square centred on
    each point: (N,) bool; ``points_yx`` (N, 2) integer (row, col) inside the array."""
    pts = np.asarray(points_yx, dtype=np.int64).reshape(-1, 2)
    h, w = edges.shape
    half = max(1, int(window)) // 2
    # summed-area table: one pass over the tile, O(1) per point
    table = np.zeros((h + 1, w + 1), dtype=np.int64)
    np.cumsum(np.cumsum(edges, axis=0, dtype=np.int64), axis=1, out=table[1:, 1:])
    y0 = np.clip(pts[:, 0] - half, 0, h)
    y1 = np.clip(pts[:, 0] - half + max(1, int(window)), 0, h)
    x0 = np.clip(pts[:, 1] - half, 0, w)
    x1 = np.clip(pts[:, 1] - half + max(1, int(window)), 0, w)
    return (table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]) > 0


def content_at(data: np.ndarray, valid: np.ndarray | None, points_yx: np.ndarray, *,
               window: int, **edge_options) -> np.ndarray:
    """Whether the image has an edge (:func:`edge_map`) in the ``window`` px square around
    each point: (N,) bool; ``points_yx`` (N, 2) integer (row, col) inside the tile."""
    return edges_near(edge_map(data, valid, **edge_options), points_yx, window)


def explained_edges(covered: np.ndarray, margin: int = EXPLAINED_MARGIN) -> np.ndarray:
    """Pixels within ``margin`` px (square neighbourhood) of the outline of ``covered``
    (H, W) bool, on either side: where an edge belongs to an accepted mask. (H, W) bool."""
    if not covered.any():
        return np.zeros_like(covered)
    outline = covered & ~ndimage.binary_erosion(covered, border_value=1)
    return ndimage.maximum_filter(outline, size=2 * int(margin) + 1, mode="constant")


COLOUR_SMOOTH = 2.0
"""Gaussian sigma (px) of the colour read at a point: above the pixel noise, below the
smallest object a grid spacing serves."""

COLOUR_STRIDE = 4
"""The colour field keeps every ``COLOUR_STRIDE``-th pixel of the smoothed tile (a sixteenth
of its size, cheap to send to a worker)."""

COLOUR_TOLERANCE = 0.08
"""Largest difference, as a share of a band's value range over the tile, between a
covered point's colour and the colour at the prompt of a mask covering it for the
mask to explain the point."""


def colour_field(data: np.ndarray, valid: np.ndarray | None, *, smooth: float = COLOUR_SMOOTH,
                 stride: int = COLOUR_STRIDE) -> np.ndarray:
    """The tile's colour for the coverage test: (ceil(H / stride), ceil(W / stride), C)
    float32, each band smoothed by a Gaussian of ``smooth`` px and scaled to its value
    range over the valid pixels (0..1); bands without range are left out (C may be 0).
    Pixel ``(r, c)`` of the field is tile pixel ``(r * stride, c * stride)``."""
    usable, bands = usable_bands(data, valid, 0)
    h, w = usable.shape
    out = [((ndimage.gaussian_filter(values, smooth) - low) / (high - low))[::stride, ::stride]
           for values, low, high in bands]
    if not out:
        return np.zeros((-(-h // stride), -(-w // stride), 0), dtype=np.float32)
    return np.stack(out, axis=-1).astype(np.float32)


def colour_at(field: np.ndarray, points_yx: np.ndarray, stride: int = COLOUR_STRIDE
              ) -> np.ndarray:
    """(N, C) colours of ``field`` (:func:`colour_field`) at (N, 2) integer tile (row, col)."""
    pts = np.asarray(points_yx, dtype=np.int64).reshape(-1, 2)
    r = np.clip((pts[:, 0] + stride // 2) // stride, 0, field.shape[0] - 1)
    c = np.clip((pts[:, 1] + stride // 2) // stride, 0, field.shape[1] - 1)
    return field[r, c]


def explained_by_colour(candidates: Sequence[Any], field: np.ndarray, origin: tuple[int, int],
                        points_yx: np.ndarray, *, tolerance: float = COLOUR_TOLERANCE,
                        stride: int = COLOUR_STRIDE) -> np.ndarray:
    """Whether some candidate's mask covers each point with a prompt colour within
    ``tolerance`` of the point's in every band: (N,) bool. ``points_yx`` (N, 2) integer
    tile (row, col); candidates in raster coordinates, the tile's top-left at ``origin``."""
    pts = np.asarray(points_yx, dtype=np.int64).reshape(-1, 2)
    out = np.zeros(len(pts), dtype=bool)
    if len(pts) == 0 or field.shape[-1] == 0:
        return np.ones(len(pts), dtype=bool)  # no colour to tell them apart
    colours = colour_at(field, pts, stride)
    oy, ox = origin
    for c in candidates:
        mask = np.asarray(c.mask, dtype=bool)
        ry, rx = pts[:, 0] + oy - int(c.y0), pts[:, 1] + ox - int(c.x0)
        inside = (ry >= 0) & (rx >= 0) & (ry < mask.shape[0]) & (rx < mask.shape[1]) & ~out
        if not inside.any():
            continue
        idx = np.flatnonzero(inside)
        idx = idx[mask[ry[idx], rx[idx]]]
        if len(idx) == 0:
            continue
        seed = np.array([[int(np.floor(c.point[1])) - oy, int(np.floor(c.point[0])) - ox]])
        seed_colour = colour_at(field, seed, stride)[0]
        out[idx] = np.abs(colours[idx] - seed_colour).max(axis=1) <= tolerance
    return out


def paint_coverage(covered: np.ndarray, origin: tuple[int, int], candidates: Sequence[Any]
                   ) -> None:
    """OR the candidates' masks (raster coordinates ``y0, x0``) into ``covered`` in place.

    ``covered`` (H, W) bool over the tile's raster pixels, its top-left pixel
    at raster ``origin`` (y0, x0).
    """
    oy, ox = origin
    h, w = covered.shape
    for c in candidates:
        mask = np.asarray(c.mask, dtype=bool)
        y0, x0 = int(c.y0) - oy, int(c.x0) - ox
        ys, xs = max(0, y0), max(0, x0)
        ye, xe = min(h, y0 + mask.shape[0]), min(w, x0 + mask.shape[1])
        if ye > ys and xe > xs:
            covered[ys:ye, xs:xe] |= mask[ys - y0:ye - y0, xs - x0:xe - x0]


def decode_coarse_to_fine(
    points_xy: np.ndarray,
    level: np.ndarray,
    edges: np.ndarray | None,
    *,
    decode: Callable[[np.ndarray], Any],
    accept: Callable[[Any], list],
    origin: tuple[int, int],
    shape: tuple[int, int],
    window: int = 1,
    margin: int = EXPLAINED_MARGIN,
    targets: np.ndarray | None = None,
    colours: np.ndarray | None = None,
    cover_iou: float = 0.0,
) -> tuple[list[Any], np.ndarray]:
    """Decode a tile's points level by level; return (the levels' decoder outputs, decoded).

    ``points_xy`` (N, 2) raster XY; ``level`` (N,) from :func:`point_levels`;
    ``edges`` (h, w) bool over the tile's raster window from :func:`edge_map`
    (None: content everywhere); a later level's point is decoded only with
    an edge not explained by the accepted masks (``margin``, see
    :func:`explained_edges`) in the ``window`` px square around it;
    ``decode(points)`` runs the decoder with its filters and NMS on (M, 2)
    raster XY; ``accept(output)`` turns an output into the tile's accepted
    candidates (raster coordinates); ``origin`` (y0, x0) and ``shape`` (h, w)
    the tile's raster window. ``targets`` (N, 2) raster XY or None: where the
    finest level decodes each of its points instead of the grid point (NaN: not
    at all; :func:`napari_sam.core.automatic.blobs.cell_targets`), the coverage
    and edge tests then made at the target. ``colours``: the tile's
    :func:`colour_field` or None; with it a covered point is decoded unless a
    mask covering it has its colour (:func:`explained_by_colour`). ``cover_iou``:
    at the finest level only masks with a predicted IoU at least this cover points
    and explain edges (0: every accepted mask does); the middle levels count every accepted mask.
    ``decoded`` (N,) bool marks the points decoded.
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    level = np.asarray(level, dtype=np.int64).reshape(-1)
    covered = np.zeros(shape, dtype=bool)
    oy, ox = origin
    py = np.clip(np.floor(pts[:, 1]).astype(np.int64) - oy, 0, shape[0] - 1)
    px = np.clip(np.floor(pts[:, 0]).astype(np.int64) - ox, 0, shape[1] - 1)
    if edges is not None and tuple(edges.shape) != tuple(shape):
        raise ValueError(f"edge map {edges.shape} is not the tile's shape {tuple(shape)}")
    decoded = np.zeros(len(pts), dtype=bool)
    outputs, accepted = [], []
    n_levels = int(level.max()) + 1 if len(level) else 0
    for k in range(n_levels):
        pick = level == k
        last = k == n_levels - 1
        cover, explaining = covered, accepted
        if last and cover_iou > 0:  # the finest level: only confident masks cover and explain
            explaining = [c for c in accepted if c.predicted_iou >= cover_iou]
            cover = np.zeros(shape, dtype=bool)
            paint_coverage(cover, origin, explaining)
        if targets is not None and last and k > 0:
            moved = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
            pick &= np.isfinite(moved).all(axis=1)
            pts = np.where(pick[:, None], moved, pts)
            py = np.clip(np.floor(pts[:, 1]).astype(np.int64) - oy, 0, shape[0] - 1)
            px = np.clip(np.floor(pts[:, 0]).astype(np.int64) - ox, 0, shape[1] - 1)
        if k > 0:
            hidden = pick & cover[py, px]
            if colours is not None and hidden.any():
                hidden[hidden] = explained_by_colour(
                    explaining, colours, origin, np.stack([py[hidden], px[hidden]], axis=1))
            pick &= ~hidden
            if edges is not None and pick.any():
                live = edges & ~explained_edges(cover, margin)
                pick[pick] = edges_near(live, np.stack([py[pick], px[pick]], axis=1), window)
        if not pick.any():
            continue
        out = decode(pts[pick])
        decoded |= pick
        outputs.append(out)
        if k + 1 < n_levels:
            found = accept(out)
            paint_coverage(covered, origin, found)
            accepted.extend(found)
    return outputs, decoded
