"""Several prompted objects followed through a stack (issue 16): core's propagate_objects.

With a SAM 2 model (tests/sam2_tiny.py) both objects, prompted on different
planes, must come out exactly as the several-object driver gives them (the
driver is tested against the reference video predictor in tests/sam_model);
with a SAM 1 model each object is its own decode-then-propagate run.
"""

from __future__ import annotations

import numpy as np
import pytest
from sam2_tiny import object_absent, plane_predictors, tiny_sam2

from napari_sam.core.prompt import propagate_sam2 as P2
from napari_sam.core.prompt.propagate import propagate
from napari_sam.core.prompt.propagate_objects import PlanePrompt, paint_plane, propagate_objects
from napari_sam.core.tiling.window import Window
from sam_model.sam2_objects import Sam2ObjectsPropagator

DEPTH, H, W = 6, 80, 104


def _stack() -> np.ndarray:
    rng = np.random.default_rng(4)
    stack = rng.normal(60, 12, (DEPTH, H, W))
    for z in range(DEPTH):
        stack[z, 10 + 2 * z:34 + 2 * z, 8 + 6 * z:36 + 6 * z] += 130  # object 1
        stack[z, 50:72, 70 - 3 * z:94 - 3 * z] += 90  # object 2
    return stack.clip(0, 255).astype(np.uint8)


def _prompts() -> list[PlanePrompt]:
    return [PlanePrompt(id=1, plane=(1,), points=np.array([[28.0, 24.0]]), labels=np.array([1])),
            PlanePrompt(id=2, plane=(4,), box=np.array([56.0, 48.0, 84.0, 73.0]))]


def _drain(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events


@pytest.fixture(scope="module")
def sam2_model():
    return tiny_sam2()


def test_sam2_objects_follow_the_driver(sam2_model):
    stack = _stack()
    predictor_for = plane_predictors(sam2_model, stack)
    tracks, events = _drain(propagate_objects(predictor_for, _prompts(), axis=0, size=DEPTH))
    assert events[-1].done == events[-1].total
    # the driver on the whole planes (the window is the plane: it is smaller than 128 px)
    def frame(i):
        p = predictor_for((i,))
        data, valid = p.raster.read_masked(None)
        return p.plan.normalizer.apply(data, valid)[0]

    driver = Sam2ObjectsPropagator(sam2_model, frame=frame, num_frames=DEPTH)
    for p in _prompts():
        driver.add_prompt(p.plane[0], p.id, points=p.points, labels=p.labels, box=p.box)
    last = {}
    for reverse in (False, True):
        for out in driver.propagate(reverse=reverse):
            for obj, o in out.objects.items():
                last[(obj, out.index)] = o.mask
    assert sorted(tracks) == [1, 2]
    for obj in (1, 2):
        assert sorted(tracks[obj]) == [(z,) for z in range(DEPTH)], obj
        for (z,), (window, mask) in tracks[obj].items():
            got = np.zeros((H, W), bool)
            got[window.y0:window.y1, window.x0:window.x1] = mask
            assert np.array_equal(got, last[(obj, z)]), (obj, z)
    assert not np.array_equal(last[(1, 3)], last[(2, 3)])


def test_sam2_objects_absent_everywhere_give_nothing_and_stop_early(sam2_model, monkeypatch):
    stack = _stack()
    calls = []
    frame = P2.plane_frame
    monkeypatch.setattr(P2, "plane_frame", lambda p, w: calls.append(1) or frame(p, w))
    with object_absent(sam2_model):
        tracks, _ = _drain(propagate_objects(plane_predictors(sam2_model, stack), _prompts(),
                                             axis=0, size=DEPTH))
    assert tracks == {1: {}, 2: {}}
    assert len(calls) < DEPTH  # both lost on their own planes: the passes end at once


def test_sam1_objects_each_decoded_then_propagated(tiny_model):
    stack = _stack()
    predictor_for = plane_predictors(tiny_model, stack)
    tracks, _ = _drain(propagate_objects(predictor_for, _prompts(), axis=0, size=DEPTH))
    for p in _prompts():
        res = predictor_for(p.plane).predict(p.points, p.labels, p.box, coords="pixel")
        alone, _ = _drain(propagate(predictor_for, p.plane, res.cropped(), axis=0, size=DEPTH,
                                    first_score=res.best_score))
        assert sorted(tracks[p.id]) == sorted(alone) and p.plane in alone
        for index, (window, mask) in alone.items():
            assert tracks[p.id][index][0] == window
            assert np.array_equal(tracks[p.id][index][1], mask)


def test_joined_keeps_the_run_through_the_prompted_plane():
    m = (Window(0, 0, 1, 1), np.ones((1, 1), bool))
    found = {1: m, 2: m, 3: m, 5: m, 6: m}
    assert sorted(P2._joined(found, 2)) == [1, 2, 3]
    assert P2._joined(found, 4) == {}


def test_paint_plane_smaller_object_wins():
    big = (Window(0, 0, 4, 4), np.ones((4, 4), bool))
    small = (Window(1, 1, 2, 2), np.ones((2, 2), bool))
    labels = paint_plane((5, 5), [(1, small), (2, big)])
    assert labels[1:3, 1:3].tolist() == [[1, 1], [1, 1]]
    assert (labels == 2).sum() == 12 and labels[4].tolist() == [0] * 5
    edge = (Window(3, 3, 4, 4), np.ones((4, 4), bool))  # reaches past the plane
    assert (paint_plane((5, 5), [(7, edge)]) == 7).sum() == 4


def test_prompt_extent_and_window():
    p = PlanePrompt(id=1, plane=(0,), points=np.array([[10.0, 20.0], [30.0, 25.0]]),
                    labels=np.array([1, 0]), box=np.array([5.0, 22.0, 12.0, 40.0]))
    assert p.extent() == (20.0, 5.0, 41.0, 31.0)
    assert P2.window_around(p.extent(), (2000, 3000), 256) == Window(0, 0, 256, 256)
    with pytest.raises(ValueError, match="object 3"):
        PlanePrompt(id=3, plane=(0,)).extent()


def test_sam2_frames_are_the_window_around_the_prompts(sam2_model):
    """On planes larger than the model's input the frames are the 128 px window around
    the prompts, and the prompts are moved into it."""
    rng = np.random.default_rng(2)
    depth, h, w = 3, 200, 260
    stack = rng.normal(60, 12, (depth, h, w))
    for z in range(depth):
        stack[z, 120 + 2 * z:150 + 2 * z, 170 + 3 * z:204 + 3 * z] += 130
    stack = stack.clip(0, 255).astype(np.uint8)
    predictor_for = plane_predictors(sam2_model, stack)
    prompt = PlanePrompt(id=4, plane=(1,), points=np.array([[188.0, 137.0]]),
                         labels=np.array([1]))
    tracks, _ = _drain(propagate_objects(predictor_for, [prompt], axis=0, size=depth))
    window = P2.window_around(prompt.extent(), (h, w), 128)
    assert window == Window(72, 124, 128, 128)  # clipped at the bottom

    def frame(i):
        return P2.plane_frame(predictor_for((i,)), window)

    driver = Sam2ObjectsPropagator(sam2_model, frame=frame, num_frames=depth)
    first = driver.add_prompt(1, 4, points=[[188.0 - 124, 137.0 - 72]], labels=[1])
    expected = {1: first.mask}
    for reverse in (False, True):
        for out in driver.propagate(reverse=reverse):
            if out.index != 1:
                expected[out.index] = out.objects[4].mask
    assert sorted(tracks[4]) == [(0,), (1,), (2,)]
    for (z,), (win, mask) in tracks[4].items():
        got = np.zeros((h, w), bool)
        got[win.y0:win.y1, win.x0:win.x1] = mask
        want = np.zeros((h, w), bool)
        want[72:200, 124:252] = expected[z]
        assert np.array_equal(got, want), z
