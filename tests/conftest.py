"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / "tests" / "data" / "rasterio"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real rasters from rasterio's test data (CC0), copied into tests/data/rasterio.

    RGB.byte.tif (the Landsat scene) is not duplicated there: it is the bundled
    sample, ``sample_data/landsat_rgb_epsg32618.tif``; this folder maps the
    original name to it so tests can use either.
    """
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_scene() -> Path:
    """The Landsat scene bundled with the package (EPSG:32618)."""
    return REPO / "sample_data" / "landsat_rgb_epsg32618.tif"


@pytest.fixture(scope="module")
def tiny_model():
    """A tiny random-weight Sam (256-px input, 16x16 grid), seeded, named "tiny-test"."""
    import torch

    from sam_model import build_sam_from_config, tiny_test_config

    torch.manual_seed(0)
    model = build_sam_from_config(tiny_test_config(img_size=256)).eval()
    model.model_name = "tiny-test"
    return model


@pytest.fixture
def cli_tiny_model(monkeypatch, tiny_model):
    """CLI subcommands load ``tiny_model`` instead of the model their options name."""
    import napari_sam.cli.common as common

    monkeypatch.setattr(common, "load_model_from_args", lambda args: tiny_model)
    return tiny_model


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
