"""The coarse passes of multi-scale segmentation: embed the raster downscaled, decode, keep
the large objects (see :mod:`napari_sam.core.automatic.multiscale` for the merge rules).

Each extra scale ``s`` of ``SegmentConfig.scales`` gets the full-resolution
pass's tiling times ``s`` (tile, overlap and scale), so its tiles hold the
model's input size of pixels of the raster downscaled by ``s`` (a pyramid
level when the file has one, see ``GeoRaster.downsample``), and is decoded
with the same points per tile side and coarse-to-fine levels (but the finest:
see below), so the same density of points *in model pixels*: the model finds objects of a given size
in model pixels equally well at every scale, and at scale ``s`` the objects
it is asked for (``64 * s`` raster px and more across) are 64-256 model px,
where a sparser grid misses many (at half the density, a grid point every 64
model px, recall of 128-512 px objects on ``benchmarks/bench_recall.py``'s
2048 px mosaic was 0.23; at this density 0.54). The cost is small: the
scale has ``s * s`` times fewer tiles. The finest coarse-to-fine level
(points a spacing apart, 32 model px by default) is not decoded at a
coarse scale: it serves objects of a spacing or two, which a coarse scale
does not keep. On the 2048 px mosaic (blob points at full resolution) this
decoded 247 points at the coarse scales instead of 844 and found one
object fewer of the 13 of 128-512 px and of the 7 larger (recall 0.46 and
0.14 against 0.54 and 0.29: the embedded model's masks of large objects
pass the filters from few points); dropping the middle level as well lost
half of them (0.23 and 0). Its embeddings go to a temporary
store beside the outputs, removed afterwards.

Its masks come out at raster resolution, the decoder's logits upsampled
bilinearly (:class:`napari_sam.core.automatic.decode.TileDecoder`), so a 1/4
mask has smooth outlines rather than 4 x 4 px stairs.

A scale is used while the raster downscaled by it is at least
``MIN_SIDE`` (128) px on its longer side. Even a raster that fits in one
tile gains from the coarser scales: a model segments objects best up to a
size (sam_tiny: about 192 px of model input, see its zoom limit), and a big
cloud or field is within that size only downscaled.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from napari_sam.core.automatic.decode import (
    TileDecoder,
    _tile_works,
    merge_settings,
    plan_points,
    point_spacing,
    store_embeddings,
)
from napari_sam.core.automatic.multiscale import ScaleRules, coarse_objects, merge_scales
from napari_sam.core.automatic.point_grid import axis_windows
from napari_sam.core.automatic.settings import SegmentConfig
from napari_sam.core.progress import ProgressGen
from napari_sam.core.tiling.embed import embed_raster
from sam_model import prompt_extent_limit

MIN_SIDE = 128
"""A coarse scale is used while the downscaled raster's longer side is at least this (px)."""


def whole_limit(config: SegmentConfig, model_name: str | None) -> int | None:
    """The object length (model px) beyond which a finer mask is not taken for the same
    object as a coarser one (``multiscale.ScaleRules.same_extent``): the model's
    ``prompt_extent_limit`` when the coarse masks are refined, else None (no limit).

    Measured on ``benchmarks/bench_recall.py``'s 4096 px mosaic (``sam_lite0``): with
    ``refine="coarse"`` the limit took the objects longer than a tile from 3 of 9 to 5
    of 9 (refined coarse masks of them beat the full-resolution halves that replaced
    them); without refinement it lost 5 of the 72 objects of 128-512 px (recall 0.513
    to 0.502), whose unrefined coarse masks the full-resolution ones beat.
    """
    if config.refine == "none":
        return None
    return prompt_extent_limit(model_name)


def decode_scale(raster, store, model, *, config: SegmentConfig, fine_grid, executor=None,
                 rules: ScaleRules | None = None, known: Sequence = ()
                 ) -> ProgressGen[tuple[list, int]]:
    """One coarse scale's large objects (raster coordinates) and the points decoded.

    ``store``: the scale's embedding store; ``fine_grid``: the full-resolution
    pass's TileGrid (the objects' ``tile`` refers to it); ``known``: objects
    of coarser scales, whose outlines are no reason for a coarse-to-fine point
    (``decode._tile_works``).
    """
    grid = store.grid
    tiles = list(grid)
    # the full-resolution pass's point density, in model pixels: see the module docstring
    config = config.for_raster(raster.height, raster.width)
    rows, cols = axis_windows(tiles, raster.height, raster.width)
    fine_rows, fine_cols = axis_windows(list(fine_grid), raster.height, raster.width)
    points = plan_points(raster, tiles, tile_size=grid.tile_size,
                         points_per_side=config.points_per_side)
    decoder = TileDecoder(model=model, config=config, rows=rows, cols=cols,
                          tile_size=grid.tile_size, coarse=True)
    works = _tile_works(raster, tiles, points, store_embeddings(store),
                        with_edges=config.points == "coarse", known=known,
                        last_level="skip",
                        spacing=point_spacing(config, grid.tile_size),
                        levels=config.point_levels)
    if executor is None:
        results = ((w.index, decoder(w)) for w in works)
    else:
        results = executor.map_ordered(decoder, works)
    merge = merge_settings(config)
    return (yield from coarse_objects(
        results, rows=rows, cols=cols, stitch=merge.stitch, dedup_box=merge.box_nms_thresh,
        dedup_mask=merge.mask_iou_thresh, scale=int(grid.scale), fine_rows=fine_rows,
        fine_cols=fine_cols, n_tiles=len(tiles), rules=rules or ScaleRules()))


def coarse_passes(raster, fine_store, model, *, config: SegmentConfig, work_dir: Path,
                  model_name: str | None = None, batch_size: int | None = None,
                  executor=None) -> ProgressGen[tuple[list, int, tuple[int, ...]]]:
    """Embed and decode every extra scale of ``config.scales``; return
    (the large objects merged across those scales, points decoded, scales used).

    ``fine_store``: the full-resolution pass's embedding store (its tiling is
    multiplied per scale); ``work_dir``: where the temporary stores go.
    """
    fine = fine_store.grid
    used = [1]
    by_scale = []
    decoded = 0
    factors = [f for f in config.scales[1:]
               if max(raster.height, raster.width) / (fine.scale * f) >= MIN_SIDE]
    for factor in factors[::-1]:  # coarsest first: its objects' outlines guide the next
        path = Path(work_dir) / f".scale{factor}-{uuid.uuid4().hex[:8]}.zarr"
        try:
            store = yield from embed_raster(
                raster, path, model, tile_size=fine.tile_size * factor,
                overlap=fine.overlap * factor, scale=fine.scale * factor, batch_size=batch_size,
                device=None, model_name=model_name)
            objects, n = yield from decode_scale(
                raster, store, model, config=config, fine_grid=fine, executor=executor,
                known=[o for done in by_scale for o in done])
        finally:
            shutil.rmtree(path, ignore_errors=True)
        by_scale.append(objects)
        decoded += n
    # coarsest first; with refined masks, a finer scale's mask does not replace an object
    # longer than the model segments whole at that scale (see :func:`whole_limit`)
    merged = merge_scales(by_scale, scales=[fine.scale * f for f in factors[::-1]],
                          limit=whole_limit(config, model_name))
    return merged, decoded, tuple(used + sorted(factors))
