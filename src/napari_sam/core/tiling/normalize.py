"""One contrast stretch per raster, so that every tile is seen the same way.

:meth:`Normalizer.from_raster` computes robust per-band percentiles once, from
the whole raster when it is small, else from the finest pyramid level that
is small enough, else from a regular grid of small windows; nodata, NaN and
alpha-masked pixels are ignored. :meth:`Normalizer.apply` maps any tile of
that raster to an HWC uint8 RGB image with the same stretch: one band is
repeated as grey, two bands become (b1, b2, mean), three or more give the
first three. The result is stored as a plain dict with the embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_sam.core.io.raster import valid_mask
from napari_sam.core.tiling.window import Window

DEFAULT_PERCENTILES = (1.0, 99.0)
MAX_SAMPLE_PIXELS = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Normalizer:
    """Per-band linear stretch ``low -> 0``, ``high -> 255`` (values clipped).

    ``low``/``high`` have one entry per band of the raster it was made for;
    ``percentiles`` is what they were computed from (None: the dtype's range);
    ``sampled_from`` says which pixels were used (``"full"``, a level name,
    ``"windows"`` or ``"dtype"``).
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    nodata: float | None = None
    percentiles: tuple[float, float] | None = DEFAULT_PERCENTILES
    sampled_from: str = "full"

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high) or not self.low:
            raise ValueError("low and high need one value per band")

    @property
    def count(self) -> int:
        return len(self.low)

    # -- construction ------------------------------------------------------
    @classmethod
    def from_raster(cls, raster, *, percentiles: tuple[float, float] | None = DEFAULT_PERCENTILES,
                    max_pixels: int = MAX_SAMPLE_PIXELS) -> Normalizer:
        """Compute the stretch of ``raster`` (a GeoRaster) once, reading at most ~``max_pixels``."""
        nodata = raster.nodata
        if percentiles is None:
            low, high = _dtype_range(raster.dtype)
            return cls(low=(low,) * raster.count, high=(high,) * raster.count, nodata=nodata,
                       percentiles=None, sampled_from="dtype")
        values, where = _sample(raster, max_pixels)
        lo_q, hi_q = float(percentiles[0]), float(percentiles[1])
        if not 0 <= lo_q < hi_q <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        if values.shape[0] == 0:  # nothing valid: any stretch will do, tiles are skipped
            low_v, high_v = _dtype_range(raster.dtype)
            lows, highs = [low_v] * raster.count, [high_v] * raster.count
        else:
            qs = np.percentile(values.astype(np.float64), [lo_q, hi_q], axis=0)
            lows, highs = [float(v) for v in qs[0]], [float(v) for v in qs[1]]
        highs = [h if h > lo else lo + 1.0 for lo, h in zip(lows, highs)]
        return cls(low=tuple(lows), high=tuple(highs), nodata=nodata,
                   percentiles=(lo_q, hi_q), sampled_from=where)

    # -- use ------------------------------------------------------------------
    def apply(self, data: np.ndarray, valid: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Stretch an (h, w, bands) tile to ``(rgb HWC uint8, valid (h, w) bool)``.

        ``valid`` defaults to the nodata/NaN test; invalid pixels become 0.
        """
        if data.ndim == 2:
            data = data[..., None]
        if data.shape[-1] != self.count:
            raise ValueError(f"tile has {data.shape[-1]} bands, normaliser {self.count}")
        if valid is None:
            valid = valid_mask(data, self.nodata)
        low = np.asarray(self.low, dtype=np.float32)
        span = np.asarray(self.high, dtype=np.float32) - low
        scaled = (data.astype(np.float32) - low) / span * np.float32(255.0)
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
        out = np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)
        if self.count == 1:
            rgb = np.repeat(out, 3, axis=-1)
        elif self.count == 2:
            mean = ((out[..., :1].astype(np.uint16) + out[..., 1:2]) // 2).astype(np.uint8)
            rgb = np.concatenate([out, mean], axis=-1)
        else:
            rgb = out[..., :3]
        rgb = np.ascontiguousarray(rgb)
        rgb[~valid] = 0
        return rgb, valid

    # -- serialisation -----------------------------------------------------------
    def as_dict(self) -> dict:
        nodata = self.nodata
        return {"low": list(self.low), "high": list(self.high),
                "nodata": None if nodata is None or math.isnan(nodata) else nodata,
                "nodata_is_nan": nodata is not None and math.isnan(nodata),
                "percentiles": None if self.percentiles is None else list(self.percentiles),
                "sampled_from": self.sampled_from}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        nodata = float("nan") if d.get("nodata_is_nan") else d.get("nodata")
        pct = d.get("percentiles")
        return cls(low=tuple(float(v) for v in d["low"]), high=tuple(float(v) for v in d["high"]),
                   nodata=nodata, percentiles=None if pct is None else tuple(pct),
                   sampled_from=d.get("sampled_from", "full"))


def _dtype_range(dtype) -> tuple[float, float]:
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def _sample(raster, max_pixels: int) -> tuple[np.ndarray, str]:
    """Valid pixel values (n, bands) from the raster, a small level, or a window grid."""
    if raster.height * raster.width <= max_pixels:
        data, valid = raster.read_masked()
        return data[valid], "full"
    small = [lv for lv in raster.levels[1:] if lv.height * lv.width <= max_pixels]
    if small:
        level = max(small, key=lambda lv: lv.height * lv.width)
        data, valid = level.read_masked()
        return data[valid], f"level {level.level_name}"
    size = 64
    per_side = max(2, math.isqrt(max(1, max_pixels // (size * size))))
    ys = np.linspace(0, raster.height - size, per_side).round().astype(int)
    xs = np.linspace(0, raster.width - size, per_side).round().astype(int)
    parts = []
    for y in np.unique(np.clip(ys, 0, None)):
        for x in np.unique(np.clip(xs, 0, None)):
            win = Window(int(y), int(x), min(size, raster.height - int(y)),
                         min(size, raster.width - int(x)))
            data, valid = raster.read_masked(win)
            parts.append(data[valid])
    return np.concatenate(parts, axis=0), "windows"
