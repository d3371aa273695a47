"""The demo (``make demo``): Landsat scene -> labels, polygons in EPSG:32618, overlay PNG."""

from __future__ import annotations

from napari_sam import demo


def test_demo_main_with_embedded_weights(tmp_path, capsys):
    import geopandas as gpd
    import rasterio

    out = tmp_path / "d"
    args = ["--out", str(out), "--points-per-side", "6", "--quiet"]
    assert demo.main(args) == 0
    text = capsys.readouterr().out
    assert "overlay" in text and "EPSG:32618" in text
    folder = out / "landsat_rgb_epsg32618"
    for name in ("labels.tif", "objects.gpkg", "objects.csv", "overlay.png"):
        assert (folder / name).is_file()
    assert gpd.read_file(folder / "objects.gpkg", layer="objects").crs.to_epsg() == 32618
    with rasterio.open(folder / "labels.tif") as ds:
        assert ds.crs.to_epsg() == 32618 and ds.shape == (718, 791)
    assert demo.main(args) == 0  # a second run replaces the demo's own output
