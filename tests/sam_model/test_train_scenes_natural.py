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


def _extents(scene):
    out = []
    for i in range(len(scene.objects)):
        ys, xs = np.nonzero(scene.mask(i))
        out.append(max(np.ptp(ys), np.ptp(xs)) + 1)
    return np.array(out)


def test_small_object_scenes_hold_many_small_visible_objects():
    """--small-prob scenes: dozens of objects, most under 40 px of a 512 frame (small
    clouds, cells), each one distinct from what lies around it; at 0 the stream is the
    default one, and large scenes stay large."""
    size = 512
    small = [make_scene(np.random.default_rng([4, i]), size, small_prob=1.0) for i in range(4)]
    plain = [make_scene(np.random.default_rng([4, i]), size, dead_leaves_prob=1.0)
             for i in range(4)]
    assert min(len(s.objects) for s in small) >= 15
    assert np.median(np.concatenate([_extents(s) for s in small])) <= 24
    assert (np.median(np.concatenate([_extents(s) for s in small]))
            < np.median(np.concatenate([_extents(s) for s in plain])))
    for s in small:  # no object told apart by texture alone: its mean colour stands out
        for i in range(len(s.objects)):
            m = s.mask(i)
            ring = np.logical_xor(ndi_dilate(m, 3), m) & (s.labels == 0)
            if ring.sum() >= 8 and m.sum() >= 12:
                diff = np.abs(s.image[m].mean(0) - s.image[ring].mean(0)).max()
                assert diff > 1.0
    same = make_scene(np.random.default_rng(5), size, small_prob=0.0)
    assert np.array_equal(same.image, make_scene(np.random.default_rng(5), size).image)
    large = make_scene(np.random.default_rng([3, 0]), 256, large_prob=1.0, small_prob=1.0)
    assert _largest_extent(large) >= 256 / 3


def ndi_dilate(mask, iterations):
    from scipy import ndimage as ndi

    return ndi.binary_dilation(mask, iterations=iterations)


def test_soft_leaf_label_is_where_the_blend_is_at_least_half():
    """A soft-edged leaf blends into what lies under it; its object is exactly the pixels
    where its own colour weighs at least one half, so the label follows the visible edge."""
    from sam_model.train.scenes import _Canvas
    from sam_model.train.scenes_natural import _paint_soft_leaf

    rng = np.random.default_rng(0)
    canvas = _Canvas(rng, (64, 64))
    canvas.image[:] = 0.0
    canvas.labels[:] = 0
    yy, xx = np.mgrid[0:64, 0:64]
    rr, cc = np.nonzero((yy - 32) ** 2 + (xx - 30) ** 2 <= 8 ** 2)
    _paint_soft_leaf(np.random.default_rng(1), canvas, rr, cc, np.array([200.0] * 3, np.float32))
    pid = canvas.objects[-1][0]
    inside = canvas.labels == pid
    grey = canvas.image.mean(-1)
    assert inside.sum() == canvas.areas[pid] >= 100
    assert grey[inside].min() > 100 - 25  # the blend weight is >= 1/2 (grain aside)
    assert grey[~inside].max() < 100 + 25
    halo = (~inside) & (grey > 10)
    assert halo.sum() > 0  # soft: the colour reaches past the object's edge
    assert abs(int(inside.sum()) - len(rr)) < 0.35 * len(rr)
