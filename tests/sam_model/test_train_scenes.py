"""Generated scenes: deterministic, varied, with usable instance masks."""

from __future__ import annotations

import numpy as np

from sam_model.train.data import BatchPlan, BatchStream, scene_batch
from sam_model.train.evaluate import held_out_scenes
from sam_model.train.scenes import make_scene


def test_same_seed_same_scene_and_objects_are_visible():
    a, b = make_scene(11, 128), make_scene(11, 128)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.objects == b.objects
    c = make_scene(12, 128)
    assert not np.array_equal(a.image, c.image)
    for seed in range(6):
        scene = make_scene(seed, 128)
        assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.uint8
        for i in range(len(scene.objects)):
            assert scene.mask(i).sum() >= 12


def test_scenes_cover_grey_colour_and_composite_objects():
    grey = colour = composite = 0
    for seed in range(30):
        scene = make_scene(seed, 96)
        is_grey = np.array_equal(scene.image[..., 0], scene.image[..., 1])
        grey += is_grey
        colour += not is_grey
        composite += any(len(obj) > 1 for obj in scene.objects)
    assert grey and colour and composite


def test_batches_depend_only_on_seed_and_index():
    plan = BatchPlan(crop_sizes=(64, 96), crop_weights=(1, 1), pixels_per_batch=2 * 96 * 96,
                     objects=3, img_size=256)
    a, b = scene_batch(1, 5, plan), scene_batch(1, 5, plan)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    stream = BatchStream(seed=1, plan=plan, start=5, stop=7)
    first = next(iter(stream))
    assert all(np.array_equal(first[k], a[k]) for k in a)
    assert len(list(stream)) == 2


def test_held_out_scenes_are_not_training_scenes():
    held = held_out_scenes(2, size=96)
    assert held and all(len(s.masks) for s in held)
    train_images = [scene_batch(0, i, BatchPlan(crop_sizes=(96,), crop_weights=(1,),
                                                pixels_per_batch=96 * 96, objects=1,
                                                img_size=256))["image"][0].numpy()
                    for i in range(3)]
    assert not any(np.array_equal(h.image, t) for h in held for t in train_images)


def _extents(scene):
    out = []
    for i in range(len(scene.objects)):
        ys, xs = np.nonzero(scene.mask(i))
        out.append(max(np.ptp(ys), np.ptp(xs)) + 1)
    return out


def test_windows_of_a_large_frame_hold_bigger_objects():
    whole = [e for s in range(12) for e in _extents(make_scene(s, 128))]
    window = [e for s in range(12) for e in _extents(make_scene(s, 128, frame=1024))]
    assert window and np.median(window) > 1.5 * np.median(whole)
    # a window as large as its frame is the plain scene
    a, b = make_scene(3, 128), make_scene(3, 128, frame=128)
    assert np.array_equal(a.image, b.image) and a.objects == b.objects


def test_window_prob_draws_frames_between_crop_and_input_size():
    rng = np.random.default_rng(0)
    plan = BatchPlan(window_prob=0.5, img_size=1024)
    frames = [plan.frame(rng, 256) for _ in range(400)]
    sized = [f for f in frames if f is not None]
    assert 120 < len(sized) < 280
    assert min(sized) >= 256 and max(sized) <= 1024
    assert BatchPlan().frame(rng, 256) is None  # off by default: old runs draw the same data
