"""Prompts anywhere on a raster: points, boxes and masks to masks in raster coordinates.

:class:`RasterPredictor` takes prompts in raster pixels or map coordinates,
picks the tile of the embedding grid that holds them with the most margin
(its embedding comes from the store, or is computed once and kept), or, when
no tile holds them well, embeds a window centred on them (downscaled when
they are larger than a tile, or larger than the model segments well at full
scale: ``zoom_limit``, by default the model's ``sam_model.prompt_extent_limit``;
clicks alone are decoded at full scale and zoomed out, and the better-scored
large result is kept).
It returns a :class:`RasterMask`: candidate masks on that tile's window only
(never padded to the raster's size), their predicted IoU and the
low-resolution logits for the next refinement.

Pixel coordinates follow SAM and napari: ``x`` is the column and ``y`` the
row, and integer values are pixel centres. Map coordinates go through the
raster's inverse affine (``col + 0.5, row + 0.5`` is the centre of a pixel in
rasterio's convention, so 0.5 is taken off to reach the same frame).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from affine import Affine

from napari_sam.core.io.georef import box_to_pixel, map_to_pixel
from napari_sam.core.io.raster import GeoRaster
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.tiling.embed import EmbeddingPlan, encode_batch, plan_embedding
from napari_sam.core.tiling.normalize import DEFAULT_PERCENTILES
from napari_sam.core.tiling.store import DONE, EMPTY, EmbeddingStore
from napari_sam.core.tiling.window import Window, mask_box
from napari_sam.errors import InputError
from sam_model import (
    POINT_ZOOM,
    SamPredictor,
    prefer_zoomed_click,
    prompt_extent_limit,
    zoom_for_extent,
    zooms_clicks,
)

MASK_PROMPT_LOGIT = 10.0  # logit given to pixels inside / outside a mask prompt
MAX_SMOOTH_SCALE = 4  # downscaled windows up to this factor get bilinear, not blocky, masks


# -- results -------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Context:
    """Where an embedding comes from: a grid tile (``tile`` = (row, col)) or a free window.

    ``window``: the full-resolution raster pixels it covers; ``scale``:
    raster pixels per model-input pixel.
    """

    window: Window
    scale: int
    tile: tuple[int, int] | None = None

    @property
    def input_shape(self) -> tuple[int, int]:
        return (-(-self.window.height // self.scale), -(-self.window.width // self.scale))


@dataclass(frozen=True, kw_only=True, eq=False)
class RasterMask:
    """Candidate masks of one prompt, placed in the raster.

    ``window``: raster pixels the masks cover (the tile or window used);
    ``masks``: (K, h, w) bool on that window; ``scores``: (K,) predicted IoU;
    ``low_res_logits``: (K, L, L) float32 logits in the embedding's frame
    (pass this RasterMask back as ``mask_input`` to refine it); ``transform``:
    the affine of ``window``'s pixels. K is 0 when the prompt lies on nodata.
    """

    window: Window
    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray
    context: Context
    transform: Affine

    @property
    def best_index(self) -> int | None:
        return None if len(self.scores) == 0 else int(np.argmax(self.scores))

    @property
    def best_mask(self) -> np.ndarray:
        """(h, w) bool: the highest-scoring candidate (all False when there is none)."""
        i = self.best_index
        return np.zeros(self.window.shape, bool) if i is None else self.masks[i]

    @property
    def best_score(self) -> float:
        i = self.best_index
        return 0.0 if i is None else float(self.scores[i])

    def cropped(self, index: int | None = None) -> tuple[Window, np.ndarray]:
        """``(window, mask)`` of one candidate (default the best) cut to its bounding box."""
        i = self.best_index if index is None else index
        if i is None or not self.masks[i].any():
            return Window(self.window.y0, self.window.x0, 0, 0), np.zeros((0, 0), bool)
        m = self.masks[i]
        box = mask_box(m)
        win = Window.from_box(box, y0=self.window.y0, x0=self.window.x0)
        return win, m[box[1]:box[3], box[0]:box[2]]


# -- the predictor -----------------------------------------------------------------------
class RasterPredictor:
    """Prompted segmentation anywhere on a raster of any size.

    ``model``: a ``sam_model.Sam``; ``raster``: a GeoRaster or anything
    :func:`open_raster` opens; ``store``: an embedding store (path or
    :class:`EmbeddingStore`) made for this raster and model, whose grid and
    normalisation are then used and whose missing tiles are filled as they
    are needed. Without a store, ``tile_size``/``overlap``/``scale``/``bands``
    define the grid (as for :func:`embed_raster`) and embeddings are kept in
    memory (the last ``cache_size``). ``min_margin``: pixels a prompt must
    keep from a tile's inner edges to use that tile (default tile/16).
    ``zoom_limit``: prompts spanning more than this many model-input pixels
    are decoded on a window downscaled by a power of two that brings them
    within it; ``"auto"`` (default) takes the model's own limit
    (``sam_model.prompt_extent_limit``: 192 px for sam_tiny, 384 for
    sam_lite0, none for the official models), None never zooms out beyond
    what the tile size needs. ``zoom_clicks``: whether a click alone is also
    decoded zoomed out (see :meth:`predict`); ``"auto"``: the model's own
    (``sam_model.zooms_clicks``: sam_tiny yes, sam_lite0 no).
    """

    def __init__(self, *, model, raster, store: EmbeddingStore | str | os.PathLike | None = None,
                 tile_size: int | None = None, overlap: int | None = None,
                 scale: int | None = None, bands=None, min_margin: int | None = None,
                 cache_size: int = 8, model_name: str | None = None,
                 percentiles: tuple[float, float] | None = DEFAULT_PERCENTILES,
                 zoom_limit: int | str | None = "auto", zoom_clicks: bool | str = "auto"):
        self.model = model.eval()
        geo = open_raster(raster)
        if store is not None:
            store = store if isinstance(store, EmbeddingStore) else EmbeddingStore.open(store)
            grid, norm = store.grid, store.settings.normalization
            geo = geo.select_bands(store.settings.source.get("bands") or geo.default_bands())
            plan = plan_embedding(geo, model, tile_size=grid.tile_size, overlap=grid.overlap,
                                  scale=grid.scale, percentiles=_percentiles(norm),
                                  model_name=model_name or store.settings.model_name)
            store = EmbeddingStore.open(store.path, plan.settings)  # refuses a stale store
        else:
            geo = geo.select_bands(bands if bands is not None else geo.default_bands())
            plan = plan_embedding(geo, model, tile_size=tile_size, overlap=overlap, scale=scale,
                                  percentiles=percentiles, model_name=model_name)
        self.plan: EmbeddingPlan = plan
        self.store = store
        self.raster: GeoRaster = plan.raster
        self.grid = plan.grid
        self.min_margin = self.grid.tile_size // 16 if min_margin is None else int(min_margin)
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = max(1, int(cache_size))
        self._predictor = SamPredictor(model)
        name = model_name or model.model_name or (store.settings.model_name if store else None)
        if zoom_limit == "auto":
            zoom_limit = prompt_extent_limit(name)
        self.zoom_clicks = zooms_clicks(name) if zoom_clicks == "auto" else bool(zoom_clicks)
        if zoom_limit is not None and (isinstance(zoom_limit, str) or zoom_limit < 1):
            raise InputError(f"zoom_limit must be 'auto', None or a positive number of "
                             f"pixels, not {zoom_limit!r}")
        self.zoom_limit = zoom_limit
        self._current: Context | None = None
        self._has_mask = (self.raster.nodata is not None or self.raster.alpha is not None
                          or self.raster.dtype.kind == "f")

    # -- choosing where to decode -------------------------------------------------------
    def context_for(self, y0: float, x0: float, y1: float, x1: float) -> Context:
        """The tile (or a centred window) for a prompt spanning rows y0..y1, cols x0..x1.

        Coordinates are continuous pixel edges (pixel (r, c) spans r..r+1).
        A prompt larger than ``zoom_limit`` gets a window downscaled so that
        it fits the limit.
        """
        zoom = zoom_for_extent(max(y1 - y0, x1 - x0) / self.grid.scale, self.zoom_limit)
        if zoom == 1:
            tile, margin = self.grid.tile_holding(y0, x0, y1, x1)
            need = min(self.min_margin, self.grid.tile_size // 2)
            if tile is not None and margin >= need:
                return Context(window=tile.window, scale=tile.scale, tile=tile.index)
        return self._centred_window(y0, x0, y1, x1, zoom)

    def _centred_window(self, y0, x0, y1, x1, zoom: int = 1) -> Context:
        t, h, w = self.grid.tile_size, self.raster.height, self.raster.width
        span = max(y1 - y0, x1 - x0) + 2 * self.min_margin
        k = max(1, zoom, math.ceil(span / t))
        scale = self.grid.scale * k
        side = t * k

        def start(lo, hi, length):
            if length <= side:
                return 0
            s = int(round((lo + hi) / 2 - side / 2))
            s = min(max(0, s), length - side)
            return s - s % scale

        wy, wx = start(y0, y1, h), start(x0, x1, w)
        window = Window(wy, wx, min(side, h - wy), min(side, w - wx))
        return Context(window=window, scale=scale)

    # -- embeddings --------------------------------------------------------------------------
    def _level(self, scale: int) -> GeoRaster:
        return self.raster.downsample(scale)

    def _input_window(self, ctx: Context) -> Window:
        level = self._level(ctx.scale)
        s = ctx.scale
        win = Window(ctx.window.y0 // s, ctx.window.x0 // s, *ctx.input_shape)
        clipped = win.clip(level.height, level.width)
        return clipped if clipped is not None else Window(level.height - 1, level.width - 1, 1, 1)

    def embedding(self, ctx: Context) -> np.ndarray | None:
        """(C, h, w) float32 embedding of ``ctx`` (None when it holds no valid pixel)."""
        key = (ctx.tile, ctx.window, ctx.scale)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        emb = None
        if ctx.tile is not None and self.store is not None:
            state = self.store.tile_status(*ctx.tile)
            if state == DONE:
                emb = self.store.read(*ctx.tile)
            elif state == EMPTY:
                return None
        if emb is None:
            data, valid = self._level(ctx.scale).read_masked(self._input_window(ctx))
            if not valid.any():
                if ctx.tile is not None and self.store is not None:
                    self.store.mark_empty(*ctx.tile)
                return None
            rgb, _ = self.plan.normalizer.apply(data, valid)
            emb = encode_batch(self.model, [rgb])[0]
            if ctx.tile is not None and self.store is not None and not self.store.read_only:
                self.store.write(*ctx.tile, emb)
        self._cache[key] = emb
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return emb

    def _set(self, ctx: Context, emb: np.ndarray) -> None:
        if self._current == ctx:
            return

        hw = self._input_window(ctx).shape
        self._predictor.set_image_embedding(torch.from_numpy(emb)[None], original_size=hw,
                                            input_size=hw)
        self._current = ctx

    # -- prompts ---------------------------------------------------------------------------------
    def predict(self, points=None, labels=None, box=None, mask_input=None, *,
                coords: str = "pixel", multimask: bool | None = None) -> RasterMask:
        """Masks for one object's prompt.

        ``points``: (N, 2) XY; ``labels``: (N,) 1 positive / 0 negative
        (default all positive); ``box``: XYXY; ``coords``: ``"pixel"`` or
        ``"map"`` for both. ``mask_input``: a previous :class:`RasterMask`
        (its logits are reused when it was made on the same tile) or a pair
        ``(Window, (h, w) bool mask)`` in raster pixels. ``multimask``: three
        candidates instead of one (default: only for a single point alone).
        With a ``zoom_limit`` and ``zoom_clicks`` (default: the model's own,
        ``sam_model.zooms_clicks``), points alone (no box, no mask) that fit at full
        scale are also decoded on a window downscaled by ``sam_model.POINT_ZOOM``,
        and that result is returned when ``sam_model.prefer_zoomed_click``
        prefers it (a large object: a click gives no object size); clicks that
        pass it back as ``mask_input`` stay on its window.
        """
        pts, lbl, bx = self._prompt_pixels(points, labels, box, coords)
        extent = _extent(pts, bx, mask_input)
        if extent is None:
            raise InputError("a prompt needs at least one point, a box or a mask")
        ctx = self._reuse_context(mask_input, extent) or self.context_for(*extent)
        if multimask is None:
            multimask = bx is None and pts is not None and len(pts) == 1 and mask_input is None
        result = self._predict_in(ctx, pts, lbl, bx, mask_input, multimask)
        if self.zoom_limit and self.zoom_clicks and bx is None and mask_input is None \
                and ctx.scale == self.grid.scale:
            result = self._zoomed_click(result, extent, pts, lbl, multimask)
        return result

    def _zoomed_click(self, full: RasterMask, extent, pts, lbl, multimask) -> RasterMask:
        """Clicks also decoded zoomed out (``sam_model.POINT_ZOOM``); the zoomed
        result replaces ``full`` where ``sam_model.prefer_zoomed_click`` says so."""
        ctx = self._centred_window(*extent, zoom=POINT_ZOOM)  # coarser than full's
        zoomed = self._predict_in(ctx, pts, lbl, None, None, multimask)
        window, _ = zoomed.cropped()
        side = max(window.height, window.width) / self.grid.scale  # full-scale input px
        if prefer_zoomed_click(full.best_score, zoomed.best_score, side, self.zoom_limit):
            return zoomed
        return full

    def _predict_in(self, ctx: Context, pts, lbl, bx, mask_input, multimask) -> RasterMask:
        """Decode a prompt on the embedding of ``ctx``."""
        emb = self.embedding(ctx)
        transform = ctx.window.transform(self.raster.transform)
        if emb is None:
            return RasterMask(window=ctx.window, masks=np.zeros((0, *ctx.window.shape), bool),
                              scores=np.zeros(0, np.float32),
                              low_res_logits=np.zeros((0, 1, 1), np.float32), context=ctx,
                              transform=transform)
        self._set(ctx, emb)
        masks, scores, logits = self._decode(ctx, pts, lbl, bx, mask_input, multimask)
        if self._has_mask:
            _, valid = self.raster.read_masked(ctx.window)
            masks &= valid[None]
        return RasterMask(window=ctx.window, masks=masks, scores=scores, low_res_logits=logits,
                          context=ctx, transform=transform)

    def _prompt_pixels(self, points, labels, box, coords):
        if coords not in ("pixel", "map"):
            raise InputError(f"coords must be 'pixel' or 'map', not {coords!r}")
        pts = lbl = bx = None
        if points is not None and len(points):
            pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            if coords == "map":
                pts = map_to_pixel(pts, self.raster.transform)
            lbl = (np.ones(len(pts), np.int64) if labels is None
                   else np.asarray(labels).astype(np.int64).reshape(-1))
            if len(lbl) != len(pts):
                raise InputError(f"{len(pts)} points but {len(lbl)} labels")
        if box is not None:
            bx = np.asarray(box, dtype=np.float64).reshape(4)
            bx = box_to_pixel(bx, self.raster.transform) if coords == "map" else bx
            bx = np.array([min(bx[0], bx[2]), min(bx[1], bx[3]), max(bx[0], bx[2]),
                           max(bx[1], bx[3])])
        inside = []
        if pts is not None:
            inside.append(pts)
        if bx is not None:
            inside.append(bx.reshape(2, 2))
        h, w = self.raster.height, self.raster.width
        for xy in inside:
            if (xy[:, 0] < -0.5).any() or (xy[:, 0] > w - 0.5).any() or \
                    (xy[:, 1] < -0.5).any() or (xy[:, 1] > h - 0.5).any():
                raise InputError(f"prompt outside the raster ({w}x{h} px): "
                                 f"{np.round(xy, 1).tolist()}")
        return pts, lbl, bx

    def _reuse_context(self, mask_input, extent) -> Context | None:
        if not isinstance(mask_input, RasterMask):
            return None
        ctx = mask_input.context
        y0, x0, y1, x1 = extent
        if ctx.tile is not None:
            tile = self.grid.tile_for(*ctx.tile)
            ok = self.grid.margin(tile, y0, x0, y1, x1) >= min(self.min_margin,
                                                               self.grid.tile_size // 2)
        else:
            w = ctx.window
            ok = w.y0 <= y0 and w.x0 <= x0 and y1 <= w.y1 and x1 <= w.x1
        return ctx if ok else None

    def _decode(self, ctx: Context, pts, lbl, bx, mask_input, multimask):
        s = ctx.scale
        device = self.model.device

        def to_input(xy):  # raster pixel (centre convention) -> model-input pixel
            return (xy + 0.5 - np.array([ctx.window.x0, ctx.window.y0])) / s - 0.5

        coords = labels = boxes = mask_t = None
        if pts is not None:
            coords = torch.as_tensor(to_input(pts), dtype=torch.float32, device=device)[None]
            labels = torch.as_tensor(lbl, device=device)[None]
        if bx is not None:
            b = to_input(bx.reshape(2, 2)).reshape(1, 4)
            boxes = torch.as_tensor(b, dtype=torch.float32, device=device)
        if mask_input is not None:
            low = self._mask_logits(ctx, mask_input)
            mask_t = torch.as_tensor(low, dtype=torch.float32, device=device)[None, None]
        smooth = 1 < s <= MAX_SMOOTH_SCALE  # bilinear logits; nearest beyond (memory)
        masks, iou, low_res = self._predictor.predict_torch(coords, labels, boxes, mask_t,
                                                            multimask_output=multimask,
                                                            return_logits=smooth)
        if smooth:
            h, w = masks.shape[-2:]
            masks = F.interpolate(masks, size=(h * s, w * s), mode="bilinear",
                                  align_corners=False) > self.model.mask_threshold
        masks = masks[0].cpu().numpy()
        if s > MAX_SMOOTH_SCALE:
            masks = np.repeat(np.repeat(masks, s, axis=1), s, axis=2)
        masks = np.ascontiguousarray(masks[:, : ctx.window.height, : ctx.window.width])
        return masks, iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    def _mask_logits(self, ctx: Context, mask_input) -> np.ndarray:
        """An (L, L) logits prompt in ``ctx``'s frame from a RasterMask or (Window, mask)."""
        if isinstance(mask_input, RasterMask):
            if mask_input.context == ctx and mask_input.best_index is not None:
                return mask_input.low_res_logits[mask_input.best_index]
            window, mask = mask_input.window, mask_input.best_mask
        else:
            window, mask = mask_input
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (window.height, window.width):
                raise InputError(f"mask prompt of shape {mask.shape} does not fit its window "
                                 f"{window.height}x{window.width}")
        # paste the mask into the context window, then sample it on the low-res grid
        canvas = np.zeros(ctx.window.shape, bool)
        part = window.intersection(ctx.window)
        if part is not None:
            src = part.relative_to(window)
            dst = part.relative_to(ctx.window)
            canvas[dst.slices] = mask[src.slices]
        img_size = int(self.model.image_encoder.img_size)
        low = int(self.model.prompt_encoder.mask_input_size[0])
        step = img_size / low * ctx.scale  # raster pixels per low-res cell
        centres = (np.arange(low) + 0.5) * step
        rows = np.floor(centres).astype(int)
        keep_r, keep_c = rows < canvas.shape[0], rows < canvas.shape[1]
        grid = np.zeros((low, low), bool)
        grid[np.ix_(keep_r, keep_c)] = canvas[np.ix_(rows[keep_r], rows[keep_c])]
        return np.where(grid, MASK_PROMPT_LOGIT, -MASK_PROMPT_LOGIT).astype(np.float32)


def _percentiles(norm: dict):
    pct = norm.get("percentiles")
    return None if pct is None else tuple(pct)


def _extent(pts, bx, mask_input) -> tuple[float, float, float, float] | None:
    """(y0, x0, y1, x1) continuous pixel edges spanned by the prompt."""
    ys, xs = [], []
    if pts is not None:
        ys += list(pts[:, 1] + 0.5)
        xs += list(pts[:, 0] + 0.5)
    if bx is not None:
        ys += [bx[1] + 0.5, bx[3] + 0.5]
        xs += [bx[0] + 0.5, bx[2] + 0.5]
    # a previous result refines on its own tile: only points and boxes place the prompt
    use_mask = mask_input is not None and (not isinstance(mask_input, RasterMask) or not ys)
    if use_mask:
        if isinstance(mask_input, RasterMask):
            win, m = mask_input.cropped()
        else:
            win, m = mask_input[0], np.asarray(mask_input[1], bool)
            box = mask_box(m)
            win = None if box is None else Window.from_box(box, y0=win.y0, x0=win.x0)
        if win is not None and win.height and win.width:
            ys += [win.y0, win.y1]
            xs += [win.x0, win.x1]
    if not ys:
        return None
    return (min(ys), min(xs), max(ys), max(xs))
