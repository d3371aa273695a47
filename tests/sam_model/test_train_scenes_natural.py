"""Dead-leaves scenes, texture fields and RandConv (sam_model.train.scenes_natural)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from sam_model.train.data import BatchPlan, scene_batch
from sam_model.train.scenes import make_scene
from sam_model.train.scenes_natural import (
    TEXTURES,
    fractal_noise,
    natural_colour,
    random_convolution,
    texture_field,
)


def test_default_scenes_are_unchanged():
    """Held-out scenes (dead_leaves_prob 0) are the ones earlier models were scored on."""
    h = hashlib.sha256()
    for seed in range(6):
        s = make_scene(seed, 256)
        h.update(s.image.tobytes())
        h.update(s.labels.tobytes())
        h.update(str(s.objects).encode())
    assert h.hexdigest()[:16] == "dbb56e0eeb8f1ac9"


@pytest.mark.parametrize("seed", range(4))
def test_dead_leaves_scene_objects_are_visible_leaves(seed):
    a = make_scene(np.random.default_rng([9, seed]), 192, dead_leaves_prob=1.0)
    b = make_scene(np.random.default_rng([9, seed]), 192, dead_leaves_prob=1.0)
    assert np.array_equal(a.image, b.image) and a.objects == b.objects
    assert len(a.objects) >= 3
    for i, ids in enumerate(a.objects):
        assert len(ids) == 1  # one leaf, one object
        assert a.mask(i).sum() >= 12
    # occlusion: some painted leaves are hidden or cut (fewer objects than leaves drawn)
    assert a.labels.max() >= len(a.objects)


def test_texture_fields_and_colours():
    rng = np.random.default_rng(0)
    f = fractal_noise(rng, (64, 80))
    assert f.shape == (64, 80) and abs(f.mean()) < 1e-4 and f.std() == pytest.approx(1, abs=1e-3)
    for kind in TEXTURES:
        t = texture_field(rng, (32, 48), kind)
        assert t.shape == (32, 48) and t.dtype == np.float32
        assert (t.std() > 0.3) == (kind != "flat")
    cols = np.stack([natural_colour(rng) for _ in range(500)])
    lum = cols.mean(1)
    chroma = cols - lum[:, None]
    assert lum.std() > 3 * chroma.std()  # luminance varies far more than hue


def test_random_convolution_keeps_shape_and_statistics():
    scene = make_scene(3, 128)
    out = random_convolution(np.random.default_rng(1), scene.image)
    assert out.shape == scene.image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, scene.image)
    assert abs(out.astype(float).mean() - scene.image.astype(float).mean()) < 25


def test_plan_options_reach_the_batches():
    plain = BatchPlan(crop_sizes=(64,), crop_weights=(1.0,), pixels_per_batch=64 * 64 * 3,
                      objects=2)
    mixed = BatchPlan(crop_sizes=(64,), crop_weights=(1.0,), pixels_per_batch=64 * 64 * 3,
                      objects=2, dead_leaves_prob=1.0, randconv_prob=1.0)
    a, b = scene_batch(0, 0, plain), scene_batch(0, 0, mixed)
    assert a["image"].shape == b["image"].shape == (3, 64, 64, 3)
    assert not np.array_equal(a["image"].numpy(), b["image"].numpy())


def _largest_extent(scene) -> int:
    extents = []
    for i in range(len(scene.objects)):
        ys, xs = np.nonzero(scene.mask(i))
        if len(ys):
            extents.append(max(np.ptp(ys), np.ptp(xs)) + 1)
    return max(extents, default=0)


@pytest.mark.parametrize("dead_leaves", [0.0, 1.0])
def test_large_object_scenes_hold_objects_of_a_third_of_the_frame_or_more(dead_leaves):
    """--large-prob scenes: the largest object of most scenes spans a third of the frame
    or more, which ordinary scenes rarely reach; at 0 the stream is the default one."""
    size = 256
    large = [_largest_extent(make_scene(np.random.default_rng([3, i]), size, large_prob=1.0,
                                        dead_leaves_prob=dead_leaves)) for i in range(12)]
    plain = [_largest_extent(make_scene(np.random.default_rng([3, i]), size,
                                        dead_leaves_prob=dead_leaves)) for i in range(12)]
    assert np.mean([e >= size / 3 for e in large]) >= 0.75
    assert np.median(large) > np.median(plain)
    same = make_scene(np.random.default_rng(5), size, large_prob=0.0)
    assert np.array_equal(same.image, make_scene(np.random.default_rng(5), size).image)
