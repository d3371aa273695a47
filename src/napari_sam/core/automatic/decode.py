"""Automatic segmentation of a whole raster, tile by tile, from its embedding store.

Pipeline (see :mod:`napari_sam.core.automatic.point_grid`, :mod:`~napari_sam.core.automatic.candidates`,
:mod:`~napari_sam.core.automatic.assembly`):

1. a global point grid in raster pixels, ``points_per_side`` points per tile
   side; each point goes to the one tile where it is most central;
2. per tile (:class:`TileDecoder`, the unit of work that a dask cluster runs):
   the cached embedding is restored into a predictor, the tile's points are
   decoded with the decoder's own filters (predicted IoU, stability score,
   box NMS), masks are cut to the raster and to valid (non-nodata) pixels,
   masks cut by an inner tile border are kept as partials (or dropped with
   ``stitch_seams=False``), small holes and islands of the others are
   cleaned, ``min_area``/``max_area`` applied; masks stay bounding-box crops;
3. on the client: seam stitching (:mod:`~napari_sam.core.automatic.seams`) joins the
   partials of neighbouring tiles that agree in their overlap into one
   object, so an object larger than the overlap that straddles a seam, a
   corner or several tiles keeps one id and all its pixels; then cross-tile
   deduplication, ids, painting and the object table stream in row-major
   tile order, so memory follows about two tile-rows.

Points on nodata pixels are not decoded: an all-nodata raster costs nothing
and gives an empty result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_sam.core.automatic.assembly import AssemblyStats, MergeSettings, assemble_objects
from napari_sam.core.automatic.blobs import blob_strength, cell_targets
from napari_sam.core.automatic.candidates import (
    Candidate,
    TileFilter,
    crops_from_masks,
    tile_candidates,
)
from napari_sam.core.automatic.coarse_to_fine import (
    TileCandidates,
    colour_field,
    decode_coarse_to_fine,
    edge_map,
    explained_edges,
    paint_coverage,
    point_levels,
)
from napari_sam.core.automatic.multiscale import ScaleMerger, inject
from napari_sam.core.automatic.object_table import ObjectRecord
from napari_sam.core.automatic.paint_labels import Sink
from napari_sam.core.automatic.point_grid import (
    AxisWindows,
    PointAssignment,
    assign_points,
    axis_windows,
)
from napari_sam.core.automatic.seams import StitchSettings
from napari_sam.core.automatic.settings import SegmentConfig
from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.tiling.store import DONE, EMPTY
from napari_sam.errors import InputError
from sam_model import SamPredictor, decode_points
from sam_model.amg_utils import nms


def points_per_batch_for(device) -> int:
    """Points per decoder call: 16 on a CPU, 64 elsewhere.

    On a CPU each prompt carries its own copy of the tile's image tokens
    through the decoder's transformer, and 16 at a time ran 1.5-2x faster
    than 64 with sam_tiny on a 2-core box (``benchmarks/gpu_check.py``
    measures it); a GPU wants larger batches.
    """
    return 16 if str(device).startswith("cpu") else 64


def tile_filter(config: SegmentConfig, tile_size: int) -> TileFilter:
    """The per-tile mask filter ``config`` asks for on tiles of ``tile_size`` px."""
    margin = config.edge_margin
    if margin is None:
        margin = max(1.0, 20.0 * tile_size / 1024.0)
    return TileFilter(edge_margin=float(margin), min_region_area=int(config.min_region_area),
                      min_area=int(config.min_area), max_area=config.max_area,
                      keep_partials=bool(config.stitch_seams))


def merge_settings(config: SegmentConfig) -> MergeSettings:
    """The cross-tile merge and seam-stitching settings ``config`` asks for."""
    cleanup = TileFilter(min_region_area=int(config.min_region_area),
                         min_area=int(config.min_area), max_area=config.max_area)
    return MergeSettings(box_nms_thresh=config.dedup_box_thresh,
                         mask_iou_thresh=config.dedup_mask_iou,
                         stitch=StitchSettings(cleanup=cleanup))


@dataclass(frozen=True)
class TileWork:
    """What one tile needs to be decoded (plain data, cheap to send to a worker).

    ``embedding`` (C, h, w) float; ``input_hw`` the size of the image the
    encoder saw (before padding); ``origin`` (y0, x0) and ``scale`` map tile
    input pixels to raster pixels; ``points`` (N, 2) XY raster pixels;
    ``valid`` (H, W) bool over the tile's raster pixels, or None;
    ``edges`` (H, W) bool over the same pixels: where the image has an edge
    (:func:`~napari_sam.core.automatic.coarse_to_fine.edge_map`; coarse-to-fine
    points only; None: not computed); ``targets`` (N, 2) raster XY or None:
    where the finest coarse-to-fine level decodes each point, NaN for not at
    all (see :func:`_tile_works`); ``colours``: the tile's
    :func:`~napari_sam.core.automatic.coarse_to_fine.colour_field` (coarse-to-fine
    points only; None: covered points are never decoded).
    """

    index: tuple[int, int]
    embedding: np.ndarray
    input_hw: tuple[int, int]
    origin: tuple[int, int]
    scale: int
    points: np.ndarray
    valid: np.ndarray | None
    edges: np.ndarray | None = None
    targets: np.ndarray | None = None
    colours: np.ndarray | None = None


class TileDecoder:
    """Decodes one tile's points into candidates; picklable, so it can run on a dask worker.

    ``model``: a ``sam_model.Sam``; ``rows`` / ``cols``: the tile windows.
    """

    def __init__(self, *, model, config: SegmentConfig, rows: AxisWindows, cols: AxisWindows,
                 tile_size: int, coarse: bool = False) -> None:
        self.model = model
        self.refine = config.refine == "all" or (coarse and config.refine == "coarse")
        self.config = config
        self.rows, self.cols = rows, cols
        self.tile_size = int(tile_size)
        self.filter = tile_filter(config, tile_size)

    def __call__(self, work: TileWork) -> TileCandidates:
        """The tile's candidates; ``.n_decoded`` counts the decoder's prompts: the points
        decoded and the masks refined (``SegmentConfig.refine``)."""
        if len(work.points) == 0:
            return TileCandidates()

        cfg = self.config
        predictor = SamPredictor(self.model)  # one per call: workers' threads share the decoder
        emb = torch.as_tensor(np.asarray(work.embedding), dtype=torch.float32)
        if emb.ndim == 3:
            emb = emb[None]
        hw = (int(work.input_hw[0]), int(work.input_hw[1]))
        # masks come out at raster resolution: a downscaled tile's mask logits are upsampled
        # bilinearly by its scale before the threshold (smooth outlines, not scale x scale
        # blocks); their stability is scored at the tile's own resolution, as the reference
        # scores an image's masks, and s * s times cheaper
        s = int(work.scale)
        predictor.set_image_embedding(emb.to(predictor.device),
                                      original_size=(hw[0] * s, hw[1] * s), input_size=hw)
        y0, x0 = work.origin

        def decode(points_xy: np.ndarray):
            local = np.asarray(points_xy, dtype=np.float64) - [x0, y0]
            return decode_points(
                predictor, local,
                points_per_batch=cfg.points_per_batch or points_per_batch_for(predictor.device),
                pred_iou_thresh=cfg.pred_iou_thresh,
                stability_score_thresh=cfg.stability_score_thresh,
                stability_score_offset=cfg.stability_score_offset,
                box_nms_thresh=cfg.box_nms_thresh,
                stability_hw=hw if s > 1 else None,
                refine=self.refine,
            )

        if cfg.points == "full":
            batch = decode(work.points)
            return TileCandidates(self._candidates(work, batch),
                                  n_decoded=len(work.points) + batch.n_refined)
        spacing = point_spacing(cfg, self.tile_size)
        rows, cols = self.rows, self.cols
        row, col = work.index
        shape = (rows.sizes[row], cols.sizes[col])
        outputs, decoded = decode_coarse_to_fine(
            work.points, point_levels(work.points, spacing, cfg.point_levels), work.edges,
            decode=decode, accept=lambda b: self._candidates(work, b), origin=work.origin,
            shape=shape, window=content_window(cfg, self.tile_size) or 1, targets=work.targets,
            # at full resolution only: the coarse passes keep objects of 64 model px and
            # more, and there the doubtful masks' extra points cost calls for no object
            # (4096 benchmark mosaic: 4388 calls against 4303, the same recall)
            colours=work.colours, cover_iou=cfg.cover_iou if s == 1 else 0.0)
        if not outputs:  # no point at the coarsest level and none with content after it
            return TileCandidates(n_decoded=0)
        batch = _merge_levels(outputs, cfg.box_nms_thresh)
        return TileCandidates(self._candidates(work, batch),
                              n_decoded=int(decoded.sum()) + batch.n_refined)

    def _candidates(self, work: TileWork, batch) -> list[Candidate]:
        """The decoder output ``batch`` (raster pixels from the tile's origin) as the tile's
        accepted candidates."""
        y0, x0 = work.origin
        crops, offsets = _batch_crops(batch)
        iou = np.asarray(_numpy(batch.iou_preds), dtype=np.float64).reshape(-1)
        stab = np.asarray(_numpy(batch.stability), dtype=np.float64).reshape(-1)
        pts = np.asarray(_numpy(batch.points), dtype=np.float64).reshape(-1, 2) + [x0, y0]
        return tile_candidates(crops, offsets, iou, stab, pts, tile=work.index, rows=self.rows,
                               cols=self.cols, valid=work.valid, settings=self.filter)


def _merge_levels(outputs: list, box_nms_thresh: float):
    """The coarse-to-fine levels' decoder outputs as one, after one box NMS by predicted IoU."""
    first = outputs[0]
    if len(outputs) == 1:
        return first
    joined = type(first).concat(outputs, first.image_hw)
    return joined.select(nms(joined.boxes, joined.iou_preds, box_nms_thresh))


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _batch_crops(batch) -> tuple[list[np.ndarray], np.ndarray]:
    """Crops and XY offsets from a decoder result holding crops+boxes or full masks."""
    crops = getattr(batch, "crops", None)
    if crops is not None:
        boxes = getattr(batch, "boxes_xyxy", None)
        boxes = np.asarray(_numpy(batch.boxes if boxes is None else boxes), dtype=np.int64)
        boxes = boxes.reshape(-1, 4)
        return [np.asarray(c, dtype=bool) for c in crops], boxes[:, :2].copy()
    return crops_from_masks(_numpy(batch.masks))


@dataclass(frozen=True)
class SegmentResult:
    """Objects (by id, see :class:`ObjectRecord`), counts and the work done
    (``point_levels``, ``cover_iou``: the coarse-to-fine levels and bar, None for the
    full grid)."""

    objects: list[ObjectRecord]
    stats: AssemblyStats
    n_tiles: int
    n_points: int
    n_decoded: int | None = None
    points: str = "full"
    scales: tuple[int, ...] = (1,)
    refine: str = "none"
    point_levels: int | None = None
    cover_iou: float | None = None


TileSource = Callable[[tuple[int, int]], "tuple[np.ndarray, tuple[int, int]] | None"]
"""``embedding_for((row, col))`` -> (embedding (C, h, w), input_hw); None for a tile with
nothing to decode (all nodata); raises InputError when the embedding is missing."""


def store_embeddings(store) -> TileSource:
    """A :data:`TileSource` over an ``EmbeddingStore`` (embeddings restored as float32)."""
    grid = store.grid

    def embedding_for(index: tuple[int, int]):
        state = store.tile_status(*index)
        if state == EMPTY:
            return None
        if state != DONE:
            raise InputError(f"{store.path}: tile {index} is not embedded yet; run "
                             f"`napari-sam embed` or let segment embed it")
        return store.read(*index), grid.tile_for(*index).input_shape

    return embedding_for


def plan_points(raster, tiles, *, tile_size: int, points_per_side: int) -> PointAssignment:
    """The global grid over ``raster`` assigned to ``tiles`` (any iterable of Tile)."""
    return assign_points(list(tiles), raster.height, raster.width, tile_size=tile_size,
                         points_per_side=points_per_side)


def _tile_works(raster, tiles, grid: PointAssignment, embedding_for: TileSource,
                with_edges: bool = False, known: Sequence[Candidate] = (),
                last_level: str = "grid", spacing: float = 0.0, levels: int = 1
                ) -> Iterator[TileWork]:
    """Each tile's work; ``with_edges``: also the tile's colour field
    (:func:`~napari_sam.core.automatic.coarse_to_fine.colour_field`) and edge map
    (:func:`~napari_sam.core.automatic.coarse_to_fine.edge_map`, for coarse-to-fine points)
    without the outlines of the objects ``known`` from coarser scales (raster coordinates;
    :func:`~napari_sam.core.automatic.coarse_to_fine.explained_edges`): a point whose only
    nearby edge is such an outline would find that object again or a fragment of it.

    ``last_level`` (with edges, ``levels`` coarse-to-fine levels of grid
    ``spacing``): how the finest level's points are placed: ``"grid"`` at the
    grid points, ``"blobs"`` each on the strongest blob of its cell or not at
    all (:mod:`napari_sam.core.automatic.blobs`), ``"skip"`` not decoded; the
    work's ``targets`` say where."""
    boxes = np.array([c.box for c in known], dtype=np.int64).reshape(-1, 4)
    for tile in tiles:
        pts = grid.points_for(tile.row, tile.col)
        if len(pts) == 0:
            continue
        data, valid = raster.read_masked(tile.window)
        py, px = (pts[:, 1] - tile.y0).astype(int), (pts[:, 0] - tile.x0).astype(int)
        inside = valid[py, px]
        pts = pts[inside]
        if len(pts) == 0:
            continue
        found = embedding_for(tile.index)
        if found is None:  # a tile with no valid pixel at the model's input level
            continue
        embedding, input_hw = found
        if valid.all():
            valid = None  # no nodata in this tile
        edges = colours = None
        if with_edges:
            edges = edge_map(data, valid)
            colours = colour_field(data, valid)
            near = np.flatnonzero((boxes[:, 0] < tile.x0 + edges.shape[1])
                                  & (boxes[:, 2] > tile.x0) & (boxes[:, 3] > tile.y0)
                                  & (boxes[:, 1] < tile.y0 + edges.shape[0]))
            if len(near):
                covered = np.zeros(edges.shape, dtype=bool)
                paint_coverage(covered, (tile.y0, tile.x0), [known[i] for i in near])
                edges &= ~explained_edges(covered)
        targets = None
        if with_edges and last_level != "grid" and levels > 1:
            last = point_levels(pts, spacing, levels) == levels - 1
            targets = np.where(last[:, None], np.nan, pts)
            if last_level == "blobs" and last.any():
                strength = blob_strength(data, valid, spacing)
                targets[last] = cell_targets(pts[last], strength, (tile.y0, tile.x0), spacing)
        yield TileWork(index=tile.index, embedding=embedding, input_hw=tuple(input_hw),
                       origin=(tile.y0, tile.x0), scale=int(getattr(tile, "scale", 1)),
                       points=pts, valid=valid, edges=edges,
                       targets=targets, colours=colours)


def segment_tiles(
    raster,
    grid,
    embedding_for: TileSource,
    model,
    *,
    config: SegmentConfig | None = None,
    sink: Sink,
    executor=None,
    coarse: ScaleMerger | None = None,
    scales: tuple[int, ...] = (1,),
    coarse_decoded: int = 0,
) -> ProgressGen[SegmentResult]:
    """Segment ``raster`` over the TileGrid ``grid``; labels go to ``sink``; return the objects.

    ``embedding_for`` gives each tile's cached embedding; ``model`` the Sam
    that made it. ``executor``: None decodes here; a
    :class:`napari_sam.core.automatic.distributed.DaskExecutor` sends tiles to a dask
    cluster (same results). ``coarse``: the objects of coarser scales, merged
    into this pass (:func:`napari_sam.core.automatic.multiscale.inject`);
    ``scales`` and ``coarse_decoded`` (the points decoded for them) go into
    the result. Yields Progress ("segment", tiles done).
    """
    config = config or SegmentConfig()
    tiles = list(grid)
    config = config.for_raster(raster.height, raster.width)
    rows, cols = axis_windows(tiles, raster.height, raster.width)
    points = plan_points(raster, tiles, tile_size=grid.tile_size,
                         points_per_side=config.points_per_side)
    decoder = TileDecoder(model=model, config=config, rows=rows, cols=cols,
                          tile_size=grid.tile_size)
    works = _tile_works(raster, tiles, points, embedding_for,
                        with_edges=config.points == "coarse",
                        known=coarse.objects if coarse is not None else (),
                        last_level="blobs",
                        spacing=point_spacing(config, grid.tile_size),
                        levels=config.point_levels)
    if executor is None:
        results = ((w.index, decoder(w)) for w in works)
    else:
        results = executor.map_ordered(decoder, works)
    if coarse is not None:
        results = inject(results, coarse, rows)
    counted = {"decoded": int(coarse_decoded)}

    def count(pairs):
        for index, candidates in pairs:
            counted["decoded"] += int(getattr(candidates, "n_decoded", len(candidates)))
            yield index, candidates

    table, stats = yield from assemble_objects(count(results), rows=rows, cols=cols, sink=sink,
                                       settings=merge_settings(config), n_tiles=len(tiles))
    yield Progress("segment", len(tiles), len(tiles), f"{len(table)} objects")
    return SegmentResult(objects=table, stats=stats, n_tiles=len(tiles), n_points=points.n_points,
                         n_decoded=counted["decoded"], points=config.points,
                         scales=tuple(scales), refine=config.refine,
                         point_levels=config.point_levels if config.points == "coarse" else None,
                         cover_iou=config.cover_iou if config.points == "coarse" else None)


def point_spacing(config: SegmentConfig, tile_size: int) -> float:
    """Distance (raster px) between neighbouring points of the global grid."""
    return tile_size / config.points_per_side


def content_window(config: SegmentConfig, tile_size: int) -> int | None:
    """Side (raster px) of the window searched for edges around a point: two grid spacings
    (an edge within one spacing either way); None with the full grid (not needed).

    Four spacings decoded 36% more points on the benchmark mosaic
    (``benchmarks/bench_recall.py``, 2048 px) for no gain in recall."""
    if config.points != "coarse":
        return None
    return int(round(2 * point_spacing(config, tile_size)))
