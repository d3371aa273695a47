"""Fixtures for the widget tests: a small scene and a model factory giving the tiny
random-weight model of tests/conftest.py."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def model_factory(tiny_model):
    """A widget model factory returning the tiny model; records the choices asked for."""
    calls = []

    def factory(choice):
        calls.append(choice)
        return tiny_model

    factory.calls = calls
    return factory


def _scene(height: int = 256, width: int = 256) -> np.ndarray:
    """(h, w, 3) uint8: a dark textured background with a few bright objects."""
    rng = np.random.default_rng(1)
    img = (rng.normal(40, 6, (height, width, 3))).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    img[(yy - 80) ** 2 + (xx - 90) ** 2 < 35 ** 2] = (220, 180, 60)
    img[150:220, 140:230] = (60, 160, 220)
    img[(yy - 200) ** 2 + (xx - 60) ** 2 < 22 ** 2] = (200, 70, 90)
    return img


@pytest.fixture(scope="session")
def make_scene():
    """``make_scene(height=256, width=256)`` -> (h, w, 3) uint8 with a few bright objects."""
    return _scene


@pytest.fixture
def wait_idle(qtbot):
    """``wait_idle(widget)``: wait until the widget's worker thread has finished for good."""

    def wait(widget, timeout: int = 120000) -> None:
        qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)

    return wait
