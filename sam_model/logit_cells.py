"""Threshold statistics of SAM's upsampled mask logits without upsampling them.

SAM turns ``n x n`` low-resolution logits into an ``H x W`` mask by bilinear
interpolation to the model's input size ``S x S`` (``align_corners=False``),
cropping the padding away (to ``input_size``), and, when the image was
resized, bilinear interpolation again to ``original_size``. Both steps are
separable, so the whole chain is ``A_y @ L @ A_x.T`` where each row of ``A_y``
(``H x n``) and ``A_x`` (``W x n``) holds non-negative weights summing to one
over two or three neighbouring low-res samples.

Output pixels whose supports start at the same low-res sample form a *cell*
(4 x 4 pixels for the plain 4x upsampling). Every value in a cell is a convex
combination of the cell's low-res block, so a cell whose block is entirely
above (or entirely below) a threshold is decided without computing a pixel;
only cells that straddle the threshold, along mask boundaries, are evaluated
pixel by pixel. Counting pixels above a threshold (for the stability score)
costs in proportion to the low-res map, and building a thresholded mask
costs in proportion to its bounding box.

The result equals thresholding the interpolated logits except for values
within float rounding (about 1e-6 relative) of the threshold, where the two
summation orders can disagree. The interpolation coordinates follow PyTorch's
``F.interpolate(mode="bilinear", align_corners=False)`` exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["AxisMap", "CellUpsampler"]

# A mask whose undecided cells exceed this share of all cells (a speckled,
# noisy mask) is upsampled densely instead: per pixel, that is cheaper.
DENSE_SHARE = 0.125
# Bytes of float32 logits upsampled densely at once.
_DENSE_BUDGET = 1 << 26


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of 1D linear interpolation, align_corners=False."""
    scale = np.float32(n_in) / np.float32(n_out)
    dst = np.arange(n_out, dtype=np.float32)
    src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).astype(np.float64)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - lam)
    np.add.at(m, (rows, i1), lam)
    return m


class AxisMap:
    """One axis of the upsampling chain, grouped into cells.

    n_low: low-res samples; size: the model's input side S; keep: samples kept
    after cropping the padding (input_size along this axis); n_out: final
    samples (original_size along this axis).

    Attributes: ``span`` (S, low-res samples per cell), ``starts`` (G,) first
    low-res sample of each cell, ``members`` (G, M) output indices (padded),
    ``valid`` (G, M) bool, ``weights`` (G, M, S) float32, ``cell_of`` (n_out,)
    cell of each output sample, ``slot_of`` (n_out,) its position in the cell,
    ``sizes`` (G,) float32 outputs per cell, ``contiguous`` whether the
    starts are consecutive samples.
    """

    def __init__(self, *, n_low: int, size: int, keep: int, n_out: int, device=None) -> None:
        if not (0 < keep <= size and n_out > 0 and n_low > 0):
            raise ValueError(f"bad axis: n_low={n_low} size={size} keep={keep} n_out={n_out}")
        a = _bilinear_matrix(n_low, size)[:keep]
        if n_out != keep:
            a = _bilinear_matrix(keep, n_out) @ a
        nonzero = a > 0
        first = nonzero.argmax(axis=1)
        last = n_low - 1 - nonzero[:, ::-1].argmax(axis=1)
        span = int((last - first).max()) + 1
        first = np.minimum(first, n_low - span)
        starts, cell_of = np.unique(first, return_inverse=True)
        counts = np.bincount(cell_of, minlength=len(starts))
        m = int(counts.max())
        order = np.argsort(cell_of, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot_of = np.empty(n_out, dtype=np.int64)
        slot_of[order] = np.arange(n_out) - np.repeat(offsets, counts)
        members = np.zeros((len(starts), m), dtype=np.int64)
        valid = np.zeros((len(starts), m), dtype=bool)
        members[cell_of, slot_of] = np.arange(n_out)
        valid[cell_of, slot_of] = True
        cols = first[:, None] + np.arange(span)[None, :]
        w = np.take_along_axis(a, cols, axis=1)  # (n_out, span)
        weights = np.zeros((len(starts), m, span), dtype=np.float32)
        weights[cell_of, slot_of] = w
        dev = torch.device("cpu") if device is None else torch.device(device)
        self.span = span
        self.n_out = n_out
        self.starts = torch.as_tensor(starts, device=dev)
        self.members = torch.as_tensor(members, device=dev)
        self.valid = torch.as_tensor(valid, device=dev)
        self.weights = torch.as_tensor(weights, device=dev)
        self.cell_of = torch.as_tensor(cell_of, device=dev)
        self.slot_of = torch.as_tensor(slot_of, device=dev)
        self.sizes = torch.as_tensor(counts, dtype=torch.float32, device=dev)
        self.contiguous = bool(np.all(np.diff(starts) == 1))


def _window_extreme(x: torch.Tensor, span: int, dim: int, op) -> torch.Tensor:
    """Sliding ``op`` (torch.minimum/maximum) over ``span`` samples along ``dim``."""
    n = x.shape[dim]
    out = x.narrow(dim, 0, n - span + 1)
    for i in range(1, span):
        out = op(out, x.narrow(dim, i, n - span + 1))
    return out


def _count(flags: torch.Tensor) -> torch.Tensor:
    """True entries per leading index of a (K, R, C) bool tensor, int64.

    Rows are summed in int16 when they are short enough: several times faster
    than one int64 sum over booleans.
    """
    if flags.shape[-1] < 2**15:
        return flags.sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int64)
    return flags.flatten(1).sum(1, dtype=torch.int64)


def _pick(x: torch.Tensor, axis: AxisMap, dim: int) -> torch.Tensor:
    """Entries ``axis.starts`` of ``x`` along ``dim`` (a view when they are a range)."""
    if axis.contiguous:
        return x.narrow(dim, int(axis.starts[0]), len(axis.starts))
    return x.index_select(dim, axis.starts)


class CellUpsampler:
    """Counts and masks of upsampled logits, decided per cell.

    low_hw: ``(n_h, n_w)`` low-res logits; img_size: the model's input side;
    input_hw: the resized image inside the padded input; out_hw: the
    original image size (the final mask size).
    """

    def __init__(
        self,
        *,
        low_hw: tuple[int, int],
        img_size: int,
        input_hw: tuple[int, int],
        out_hw: tuple[int, int],
        device=None,
    ) -> None:
        self.rows = AxisMap(
            n_low=int(low_hw[0]), size=int(img_size), keep=int(input_hw[0]),
            n_out=int(out_hw[0]), device=device,
        )
        self.cols = AxisMap(
            n_low=int(low_hw[1]), size=int(img_size), keep=int(input_hw[1]),
            n_out=int(out_hw[1]), device=device,
        )
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.img_size = int(img_size)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.n_cells = len(self.rows.starts) * len(self.cols.starts)

    # -- dense path ------------------------------------------------------------
    def dense(self, low: torch.Tensor) -> torch.Tensor:
        """Upsampled logits ``(K, H, W)`` the way SAM's ``postprocess_masks`` does it."""
        s = self.img_size
        up = F.interpolate(low[:, None].float(), (s, s), mode="bilinear", align_corners=False)
        up = up[..., : self.input_hw[0], : self.input_hw[1]]
        if self.input_hw != self.out_hw:
            up = F.interpolate(up, self.out_hw, mode="bilinear", align_corners=False)
        return up[:, 0]

    def _dense_counts(self, low: torch.Tensor, thresholds: list[float]) -> torch.Tensor:
        step = max(1, _DENSE_BUDGET // (4 * max(self.img_size**2, self.out_hw[0] * self.out_hw[1])))
        parts = []
        for start in range(0, low.shape[0], step):
            up = self.dense(low[start : start + step])
            parts.append(torch.stack([_count(up > t) for t in thresholds], dim=1))
        return torch.cat(parts).to(torch.int64)

    # -- cells ---------------------------------------------------------------
    def _extremes(self, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Smallest and largest low-res value of each cell: two (K, Gh, Gw) tensors."""
        r, c = self.rows, self.cols
        lo_c = _window_extreme(low, c.span, 2, torch.minimum)
        hi_c = _window_extreme(low, c.span, 2, torch.maximum)
        lo = _pick(_window_extreme(_pick(lo_c, c, 2), r.span, 1, torch.minimum), r, 1)
        hi = _pick(_window_extreme(_pick(hi_c, c, 2), r.span, 1, torch.maximum), r, 1)
        return lo, hi

    def _evaluate(self, low: torch.Tensor, k, gy, gx) -> torch.Tensor:
        """Output values of cells (k, gy, gx): (U, Mh, Mw) float32."""
        r, c = self.rows, self.cols
        ys = r.starts[gy][:, None, None] + torch.arange(r.span, device=low.device)[None, :, None]
        xs = c.starts[gx][:, None, None] + torch.arange(c.span, device=low.device)[None, None, :]
        block = low[k[:, None, None], ys, xs]  # (U, Sh, Sw)
        return r.weights[gy] @ block @ c.weights[gx].transpose(1, 2)

    def _valid(self, gy, gx) -> torch.Tensor:
        return self.rows.valid[gy][:, :, None] & self.cols.valid[gx][:, None, :]

    @staticmethod
    def _tolerance(lo: torch.Tensor, hi: torch.Tensor) -> float:
        """Margin that float rounding of a cell's pixel values cannot cross."""
        scale = max(float(hi.max()), -float(lo.min())) if lo.numel() else 0.0
        return 1e-4 + 1e-6 * scale

    # -- public ---------------------------------------------------------------
    def counts_above(self, low: torch.Tensor, thresholds: list[float]) -> torch.Tensor:
        """Output pixels above each threshold.

        low: ``(K, n_h, n_w)`` logits. Returns ``(K, T)`` int64.
        """
        k = low.shape[0]
        out = torch.zeros(k, len(thresholds), dtype=torch.int64, device=low.device)
        if k == 0:
            return out
        low = low.float()
        lo, hi = self._extremes(low)
        tol = self._tolerance(lo, hi)
        band = (hi > min(thresholds) - tol) & (lo <= max(thresholds) + tol)
        heavy = _count(band) > DENSE_SHARE * self.n_cells
        if bool(heavy.any()):
            out[heavy] = self._dense_counts(low[heavy], thresholds)
            light = (~heavy).nonzero().flatten()
            if light.numel():
                out[light] = self.counts_above(low[light], thresholds)
            return out
        for t, thr in enumerate(thresholds):
            full = lo > thr + tol
            # Pixels in full cells: rows.sizes^T full cols.sizes (exact in float32 below 2**24).
            out[:, t] = ((full.to(torch.float32) @ self.cols.sizes) @ self.rows.sizes).round().long()
            kk, gy, gx = ((hi > thr - tol) ^ full).nonzero(as_tuple=True)  # lo <= hi
            if kk.numel():
                above = (self._evaluate(low, kk, gy, gx) > thr) & self._valid(gy, gx)
                extra = torch.zeros(k, dtype=torch.int64, device=low.device)
                extra.index_add_(0, kk, above.flatten(1).sum(1))
                out[:, t] += extra
        return out

    def stability(self, low: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
        """Stability score ``count(> t+offset) / count(> t-offset)``, ``(K,)`` float32."""
        c = self.counts_above(low, [threshold + offset, threshold - offset])
        return c[:, 0].to(torch.float32) / c[:, 1].to(torch.float32)

    def mask_crops(self, low: torch.Tensor, threshold: float) -> tuple[list[np.ndarray], torch.Tensor]:
        """Thresholded upsampled masks, each as the crop of its bounding box.

        low: ``(K, n_h, n_w)`` logits. Returns ``(crops, boxes)``: K ``(h, w)``
        bool numpy crops and ``(K, 4)`` int64 XYXY boxes with inclusive max in
        the output frame. An empty mask gives a ``1x1`` False crop and box
        ``[0, 0, 0, 0]``.
        """
        k = low.shape[0]
        crops: list[np.ndarray | None] = [None] * k
        boxes = torch.zeros(k, 4, dtype=torch.int64)
        if k == 0:
            return [], boxes
        low = low.float()
        lo, hi = self._extremes(low)
        tol = self._tolerance(lo, hi)
        full = lo > threshold + tol
        unsure = (hi > threshold - tol) ^ full  # lo <= hi: full cells are above too
        heavy = _count(unsure) > DENSE_SHARE * self.n_cells
        light = (~heavy).nonzero().flatten()
        heavy = heavy.nonzero().flatten()
        if heavy.numel():
            self._dense_crops(low[heavy], threshold, heavy.tolist(), crops, boxes)
        if light.numel():
            self._cell_crops(
                low[light], full[light], unsure[light], threshold, light.tolist(), crops, boxes
            )
        return crops, boxes

    def _dense_crops(self, low, threshold, slots, crops, boxes) -> None:
        step = max(1, _DENSE_BUDGET // (4 * max(self.img_size**2, self.out_hw[0] * self.out_hw[1])))
        for start in range(0, low.shape[0], step):
            masks = (self.dense(low[start : start + step]) > threshold).cpu()
            rows = masks.any(dim=2).numpy()
            cols = masks.any(dim=1).numpy()
            masks = masks.numpy()
            for j in range(masks.shape[0]):
                slot = slots[start + j]
                crops[slot], boxes[slot] = _crop_from(masks[j], rows[j], cols[j])

    def _cell_crops(self, low, full, unsure, threshold, slots, crops, boxes) -> None:
        r, c = self.rows, self.cols
        kk, gy, gx = unsure.nonzero(as_tuple=True)
        vals = (self._evaluate(low, kk, gy, gx) > threshold) & self._valid(gy, gx)
        # Occupied output rows / columns of each mask, from full cells and evaluated pixels.
        row_hit = full.any(dim=2)[:, r.cell_of] & r.valid[r.cell_of, r.slot_of]
        col_hit = full.any(dim=1)[:, c.cell_of] & c.valid[c.cell_of, c.slot_of]
        ys = r.members[gy][:, :, None].expand_as(vals)
        xs = c.members[gx][:, None, :].expand_as(vals)
        owner = kk[:, None, None].expand_as(vals)
        row_hit[owner[vals], ys[vals]] = True
        col_hit[owner[vals], xs[vals]] = True
        full_np = full.cpu().numpy()
        row_hit, col_hit = row_hit.cpu().numpy(), col_hit.cpu().numpy()
        owner_np, ys_np, xs_np = owner[vals].cpu().numpy(), ys[vals].cpu().numpy(), xs[vals].cpu().numpy()
        # Evaluated pixels that are False inside a full cell do not exist (full
        # cells are never evaluated), so painting the True ones is enough.
        bounds = np.searchsorted(owner_np, np.arange(len(slots) + 1))
        cell_r, cell_c = r.cell_of.cpu().numpy(), c.cell_of.cpu().numpy()
        for j, slot in enumerate(slots):
            ry = np.flatnonzero(row_hit[j])
            if ry.size == 0:
                crops[slot] = np.zeros((1, 1), dtype=bool)
                continue
            cx = np.flatnonzero(col_hit[j])
            y0, y1, x0, x1 = int(ry[0]), int(ry[-1]), int(cx[0]), int(cx[-1])
            crop = full_np[j][np.ix_(cell_r[y0 : y1 + 1], cell_c[x0 : x1 + 1])]
            sl = slice(bounds[j], bounds[j + 1])
            crop[ys_np[sl] - y0, xs_np[sl] - x0] = True
            crops[slot] = crop
            boxes[slot] = torch.tensor([x0, y0, x1, y1])


def _crop_from(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    ry = np.flatnonzero(rows)
    if ry.size == 0:
        return np.zeros((1, 1), dtype=bool), torch.zeros(4, dtype=torch.int64)
    cx = np.flatnonzero(cols)
    y0, y1, x0, x1 = int(ry[0]), int(ry[-1]), int(cx[0]), int(cx[-1])
    crop = np.ascontiguousarray(mask[y0 : y1 + 1, x0 : x1 + 1])
    return crop, torch.tensor([x0, y0, x1, y1])
