"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NAPARI_SAM_SHARED_DATA", REPO.parent / "shared" / "data" / "rasterio"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real rasters from rasterio's test data; tests skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared rasters not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_scene() -> Path:
    """The Landsat scene bundled with the package (EPSG:32618)."""
    return REPO / "sample_data" / "landsat_rgb_epsg32618.tif"


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """Tests use tiny models; two threads at most keep the suite predictable."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
