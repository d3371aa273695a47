"""napari sample data: a real satellite scene and a real microscopy image, both offline.

Files live in ``sample_data/`` (see its README for sources and licences): inside
the installed package (``napari_sam/sample_data``) for a wheel, at the
repository root for an editable install.
"""

from __future__ import annotations

from pathlib import Path

from napari_sam.errors import InputError

LANDSAT = "landsat_rgb_epsg32618.tif"
MICROSCOPY = "ihc_colon_glands.tif"


def sample_path(name: str) -> Path:
    """The path of a bundled sample file."""
    here = Path(__file__).resolve().parent
    for folder in (here / "sample_data", here.parents[1] / "sample_data"):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"{name}: sample file not found next to the package or in the repository")


def landsat_scene() -> list[tuple]:
    """Landsat 7 RGB scene, 791 x 718 px, EPSG:32618, with its georeference in the metadata."""
    from napari_sam._reader import raster_layer_data

    layers = raster_layer_data(sample_path(LANDSAT))
    for _, kwargs, _ in layers:
        kwargs["name"] = "Landsat scene (EPSG:32618)"
    return layers


def microscopy_cells() -> list[tuple]:
    """Immunohistochemistry of colonic glands (scikit-image's ``ihc``), RGB 512 x 512, pixels."""
    from napari_sam._reader import raster_layer_data

    layers = raster_layer_data(sample_path(MICROSCOPY))
    for _, kwargs, _ in layers:
        kwargs["name"] = "IHC colonic glands"
    return layers
