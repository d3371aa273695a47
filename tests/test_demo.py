"""The demo (``make demo``): Landsat scene -> labels, polygons in EPSG:32618, overlay PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam import demo


def _weights_present() -> bool:
    from pathlib import Path

    import sam_model

    return (Path(sam_model.__file__).parent / "weights" / "sam_tiny.pt").is_file()


def test_overlay_outlines_sit_on_the_polygons(tmp_path, sample_scene):
    import geopandas as gpd
    import shapely
    from PIL import Image

    from napari_sam.core.raster import open_raster

    raster = open_raster(sample_scene)
    t = raster.transform
    (x0, y0), (x1, y1) = t * (100, 200), t * (160, 260)  # pixel corners -> map
    square = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    gpkg = tmp_path / "o.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[square], crs=raster.crs).to_file(gpkg, layer="objects")
    png = demo.overlay_png(raster, gpkg, tmp_path / "overlay.png", zoom=2)
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape == (raster.height * 2, raster.width * 2, 3)
    outline = (img == demo.OUTLINE).all(axis=-1)
    ys, xs = np.nonzero(outline)
    assert (xs.min(), xs.max()) == pytest.approx((200, 320), abs=2)
    assert (ys.min(), ys.max()) == pytest.approx((400, 520), abs=2)
    assert not outline[430:490, 230:290].any()  # inside: the image, not the line


def test_run_demo_with_an_explicit_tiny_model(tmp_path):
    from sam_model import build_sam_from_config, tiny_test_config

    torch.manual_seed(0)
    model = build_sam_from_config(tiny_test_config(img_size=256)).eval()
    paths = demo.run_demo(tmp_path / "demo", model=model, points_per_side=2, quiet=True)
    for key in ("labels", "objects", "table", "overlay"):
        assert paths[key].is_file()
    import geopandas as gpd
    import rasterio

    assert gpd.read_file(paths["objects"], layer="objects").crs.to_epsg() == 32618
    with rasterio.open(paths["labels"]) as ds:
        assert ds.crs.to_epsg() == 32618 and ds.shape == (718, 791)
    # run again: the demo replaces its own earlier output
    demo.run_demo(tmp_path / "demo", model=model, points_per_side=2, quiet=True)


@pytest.mark.skipif(not _weights_present(), reason="sam_tiny weights not shipped yet")
def test_demo_main_with_embedded_weights(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path / "d"), "--points-per-side", "6", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "overlay" in out and "EPSG:32618" in out
    assert (tmp_path / "d" / "landsat_rgb_epsg32618" / "overlay.png").is_file()
