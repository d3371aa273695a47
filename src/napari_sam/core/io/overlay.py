"""A quick look at a segmentation: the raster with its objects tinted and outlined, as a PNG.

Used by ``make demo`` and by ``napari-sam segment --overlay``. The raster is
shown with the engine's robust stretch (the one its tiles are embedded with),
enlarged twice when small so that outlines stay readable, or read downscaled
(a pyramid level when the file has one, see ``GeoRaster.downsample``) so that
the PNG's longer side is at most ``max_side``: a 50,000 px mosaic gives a
2,000 px picture without being read whole. Polygons are drawn from the
GeoPackage, in map coordinates brought onto the picture's grid.
"""

from __future__ import annotations

import colorsys
import math
import os
from pathlib import Path

import numpy as np

OUTLINE = (255, 230, 0)
FILL_ALPHA = 90
"""Opacity (of 255) of each object's tint."""
MAX_SIDE = 2048
"""Default longest side of the picture (px)."""


def overlay_png(raster, gpkg: str | os.PathLike, out: str | os.PathLike, *,
                bands=None, zoom: int | None = None, max_side: int = MAX_SIDE) -> Path:
    """Draw ``gpkg``'s polygons (layer ``objects``) on ``raster`` (a GeoRaster) into a PNG:
    each object tinted in its own colour (holes left clear) and outlined. Written atomically.

    ``bands``: the raster's bands to show (1-based, as for segmentation;
    default its default bands). ``zoom``: enlarge the raster this many times;
    default 2 when the result fits ``max_side``, else the raster is read
    downscaled by the smallest integer factor that makes its longer side fit.
    """
    import geopandas as gpd
    from PIL import Image, ImageDraw

    from napari_sam.core.io.atomic import atomic_path
    from napari_sam.core.io.georef import apply_affine
    from napari_sam.core.tiling.normalize import Normalizer

    geo = raster.select_bands(bands if bands is not None else raster.default_bands())
    if zoom is None:
        longest = max(geo.height, geo.width)
        zoom = 2 if 2 * longest <= max_side else 1
        if longest > max_side:
            geo = geo.downsample(math.ceil(longest / max_side))
    data, valid = geo.read_masked()
    rgb, _ = Normalizer.from_raster(geo).apply(data, valid)
    image = Image.fromarray(np.ascontiguousarray(rgb)).convert("RGBA")
    image = image.resize((image.width * zoom, image.height * zoom), Image.NEAREST)
    tint = Image.new("RGBA", image.size, (0, 0, 0, 0))
    fill = ImageDraw.Draw(tint)
    inverse = ~geo.transform
    gdf = gpd.read_file(gpkg, layer="objects")
    outlines = []
    for oid, geom in zip(gdf["id"], gdf.geometry):
        if geom is None or geom.is_empty:
            continue
        colour = object_colour(int(oid))
        for exterior, holes in _polygons(geom):
            # pixel-corner coordinates, as PIL draws: no half-pixel shift
            rings = [[(float(c) * zoom, float(r) * zoom) for c, r in apply_affine(inverse, ring)]
                     for ring in (exterior, *holes)]
            if len(rings[0]) >= 3:
                fill.polygon(rings[0], fill=(*colour, FILL_ALPHA))
            for hole in rings[1:]:
                if len(hole) >= 3:
                    fill.polygon(hole, fill=(0, 0, 0, 0))  # replaces, does not blend
            outlines.extend(r for r in rings if len(r) >= 2)
    image = Image.alpha_composite(image, tint).convert("RGB")
    draw = ImageDraw.Draw(image)
    for pts in outlines:
        draw.line(pts, fill=OUTLINE, width=max(1, zoom // 2))
    with atomic_path(out, overwrite=True) as tmp:
        image.save(tmp, format="PNG")
    return Path(out)


def object_colour(oid: int) -> tuple[int, int, int]:
    """A bright colour for object ``oid``, neighbouring ids far apart in hue (golden ratio)."""
    r, g, b = colorsys.hsv_to_rgb((oid * 0.618034) % 1.0, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _polygons(geom) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """(exterior ring, interior rings) of each polygon of a (Multi)Polygon, map coordinates."""
    return [(np.asarray(p.exterior.coords), [np.asarray(r.coords) for r in p.interiors])
            for p in getattr(geom, "geoms", [geom])]
