"""Plane-to-plane propagation with a SAM 2 model takes SAM 2's memory path (issue 16).

A tiny random SAM 2 (hiera_tiny layout at 128 px, perturbed weights; its
object-score head biased so the object is never judged absent) on a 7-plane
stack with a square moving from plane to plane. What core returns for each
plane must be what ``Sam2VideoPropagator`` gives for that frame (the driver
is tested against the reference video predictor in tests/sam_model), in the
right plane and on both sides of the start plane; the SAM 1 step is never
used.
"""

from __future__ import annotations

import numpy as np
import pytest
from sam2_tiny import object_absent, plane_predictors, tiny_sam2

from napari_sam.core.progress import Progress
from napari_sam.core.prompt import propagate as P
from napari_sam.core.prompt.propagate_sam2 import frame_window, is_sam2
from napari_sam.core.tiling.window import Window
from sam_model.sam2_video import Sam2VideoPropagator

DEPTH, H, W, START = 7, 80, 104, 3


def _stack() -> np.ndarray:
    rng = np.random.default_rng(4)
    stack = rng.normal(60, 12, (DEPTH, H, W))
    for z in range(DEPTH):
        y, x = 20 + 2 * z, 14 + 8 * z
        stack[z, y:y + 26, x:x + 30] += 120 + 10 * z
    return stack.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sam2_tiny():
    return tiny_sam2()


def _first() -> tuple[Window, np.ndarray]:
    y, x = 20 + 2 * START, 14 + 8 * START
    return Window(y, x, 26, 30), np.ones((26, 30), bool)


def _expected(model, stack, predictor_for) -> dict[int, np.ndarray]:
    """Every plane's mask (whole plane) from the driver run directly."""
    def frame(i):
        p = predictor_for((i,))
        data, valid = p.raster.read_masked(None)
        return p.plan.normalizer.apply(data, valid)[0]

    prompt = np.zeros((H, W), bool)
    w, m = _first()
    prompt[w.y0:w.y1, w.x0:w.x1] = m
    driver = Sam2VideoPropagator(model, frame=frame, num_frames=DEPTH)
    driver.add_prompt(START, mask=prompt)
    out = {}
    for reverse in (False, True):
        for f in driver.propagate(reverse=reverse):
            out[f.index] = f.mask
    return out


def test_sam2_model_propagates_with_memory(sam2_tiny, monkeypatch):
    stack = _stack()
    predictor_for = plane_predictors(sam2_tiny, stack)
    assert is_sam2(sam2_tiny) and not is_sam2(object())

    def no_sam1_step(*_a, **_k):
        raise AssertionError("the SAM 1 plane step was used for a SAM 2 model")

    monkeypatch.setattr(P, "step", no_sam1_step)
    gen = P.propagate(predictor_for, (START,), _first(), axis=0, size=DEPTH)
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        found = stop.value
    assert all(isinstance(e, Progress) for e in events) and len(events) == DEPTH + 1
    expected = _expected(sam2_tiny, stack, predictor_for)
    assert sorted(found) == [(z,) for z in range(DEPTH)]
    assert found[(START,)] is not None and found[(START,)][1].all()
    for z, want in expected.items():
        window, mask = found[(z,)]
        got = np.zeros((H, W), bool)
        got[window.y0:window.y1, window.x0:window.x1] = mask
        assert want.any()
        assert np.array_equal(got, want), f"plane {z}"
    # the planes differ, so a mask put in the wrong plane would be seen
    assert not np.array_equal(expected[START + 1], expected[START - 1])


def test_sam2_side_stops_where_the_object_is_absent(sam2_tiny):
    stack = _stack()
    predictor_for = plane_predictors(sam2_tiny, stack)
    with object_absent(sam2_tiny):  # every tracked plane: the object is absent
        gen = P.propagate(predictor_for, (START,), _first(), axis=0, size=DEPTH)
        found = None
        while found is None:
            try:
                next(gen)
            except StopIteration as stop:
                found = stop.value
    assert list(found) == [(START,)]


def test_frame_window_is_centred_on_the_object_and_clipped():
    mask = np.ones((20, 40), bool)
    assert frame_window((Window(500, 600, 20, 40), mask), (2000, 3000), 256) == Window(
        382, 492, 256, 256)
    assert frame_window((Window(5, 2900, 20, 40), mask), (2000, 3000), 256) == Window(
        0, 2744, 256, 256)
    big = np.ones((200, 100), bool)
    assert frame_window((Window(900, 900, 200, 100), big), (2000, 3000), 256) == Window(
        700, 650, 600, 600)
    assert frame_window((Window(5, 5, 20, 40), mask), (100, 120), 256) == Window(0, 0, 100, 120)
