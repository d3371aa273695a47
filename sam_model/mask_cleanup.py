"""Remove small holes and small islands from masks stored as bounding-box crops.

The rule is the official generator's ``min_mask_region_area`` postprocessing:
first every 8-connected component of the *background* smaller than the area
threshold is filled (this includes the outer background when it is that
small), then every 8-connected component of the mask smaller than the
threshold is removed, keeping the largest one when all are small.

Work happens on the mask's bounding box plus a one-pixel background ring, not
on the full image: background components that reach the ring are connected to
the rest of the image outside the box, and their true size is the size inside
plus the part of the outside they connect to. Only when such an outside
component is itself smaller than the threshold (so the mask would grow past
its box) is the full image used.

Connected components come from ``scipy.ndimage`` (imported when used).
"""

from __future__ import annotations

import numpy as np

__all__ = ["remove_small_regions"]

_EIGHT = np.ones((3, 3), dtype=bool)


def _label(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected labels (raster order) and sizes (index 0 = not in mask)."""
    # lazy on purpose: sam_model needs only torch and numpy; scipy serves this cleanup alone
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=_EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    return labels, sizes


def _outside_pieces(
    top_left: tuple[int, int], crop_hw: tuple[int, int], image_hw: tuple[int, int]
):
    """Pad widths and the parts of the image outside the box.

    Returns ``(pads, pieces)``: pads = (top, bottom, left, right) ring widths
    (0 or 1), and pieces = list of (ring pixel selector in the padded frame,
    number of outside pixels beyond the ring) for each connected part of the
    image outside the box.
    """
    y0, x0 = top_left
    h, w = crop_hw
    H, W = image_hw
    pt, pb = int(y0 > 0), int(y0 + h < H)
    pl, pr = int(x0 > 0), int(x0 + w < W)
    ph, pw = h + pt + pb, w + pl + pr
    ring = np.ones((ph, pw), dtype=bool)
    ring[pt : pt + h, pl : pl + w] = False
    n_ring = int(ring.sum())
    outside = H * W - h * w
    if outside == 0:
        return (pt, pb, pl, pr), []
    if pl == 0 and pr == 0 and pt and pb:
        # The box spans the full width: above and below are separate.
        top = np.zeros_like(ring)
        top[0] = True
        bottom = np.zeros_like(ring)
        bottom[-1] = True
        return (pt, pb, pl, pr), [
            (top, y0 * W - pw),
            (bottom, (H - y0 - h) * W - pw),
        ]
    if pt == 0 and pb == 0 and pl and pr:
        left = np.zeros_like(ring)
        left[:, 0] = True
        right = np.zeros_like(ring)
        right[:, -1] = True
        return (pt, pb, pl, pr), [
            (left, x0 * H - ph),
            (right, (W - x0 - w) * H - ph),
        ]
    return (pt, pb, pl, pr), [(ring, outside - n_ring)]


def _fill_holes(padded: np.ndarray, pieces, area_thresh: float):
    """Fill small background components; returns (mask, changed, grew_outside)."""
    labels, sizes = _label(~padded)
    sizes = sizes.astype(np.int64)
    touching = []
    for selector, extra in pieces:
        ids = np.unique(labels[selector])
        ids = ids[ids > 0]
        sizes[ids] += extra
        touching.extend(ids.tolist())
    small = np.flatnonzero(sizes[1:] < area_thresh) + 1
    if small.size == 0:
        return padded, False, False
    grew_outside = bool(np.isin(small, touching).any())
    return padded | np.isin(labels, small), True, grew_outside


def _drop_islands(mask: np.ndarray, area_thresh: float):
    """Remove small mask components (keep the largest if all are small)."""
    labels, sizes = _label(mask)
    region_sizes = sizes[1:]
    small = region_sizes < area_thresh
    if not small.any():
        return mask, False
    keep = np.flatnonzero(~small) + 1
    if keep.size == 0:
        keep = np.array([int(np.argmax(region_sizes)) + 1])
    return np.isin(labels, keep), True


def _tight(mask: np.ndarray, origin: tuple[int, int]):
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros((1, 1), dtype=bool), (0, 0)
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.ascontiguousarray(mask[r0:r1, c0:c1])
    return crop, (origin[0] + int(r0), origin[1] + int(c0))


def remove_small_regions(
    crop: np.ndarray,
    top_left: tuple[int, int],
    image_hw: tuple[int, int],
    area_thresh: float,
) -> tuple[np.ndarray, tuple[int, int], bool]:
    """Fill small holes, then remove small islands, of one mask.

    crop: ``(h, w)`` bool, the mask inside its bounding box, whose top-left
    pixel is ``top_left = (y0, x0)`` in an image of ``image_hw = (H, W)``.
    Returns ``(new_crop, new_top_left, changed)`` with the new mask cropped to
    its own bounding box (a ``1x1`` False crop at (0, 0) when it is empty).
    """
    crop = np.asarray(crop, dtype=bool)
    y0, x0 = int(top_left[0]), int(top_left[1])
    h, w = crop.shape
    H, W = int(image_hw[0]), int(image_hw[1])
    (pt, pb, pl, pr), pieces = _outside_pieces((y0, x0), (h, w), (H, W))
    padded = np.zeros((h + pt + pb, w + pl + pr), dtype=bool)
    padded[pt : pt + h, pl : pl + w] = crop
    origin = (y0 - pt, x0 - pl)
    filled, holes_changed, grew = _fill_holes(padded, pieces, area_thresh)
    if grew:
        # A small background part reaches outside the box: redo it on the
        # full image, where that part is filled too.
        full = np.zeros((H, W), dtype=bool)
        full[y0 : y0 + h, x0 : x0 + w] = crop
        filled, holes_changed, _ = _fill_holes(full, [], area_thresh)
        origin = (0, 0)
    cleaned, islands_changed = _drop_islands(filled, area_thresh)
    new_crop, new_top_left = _tight(cleaned, origin)
    return new_crop, new_top_left, holes_changed or islands_changed
