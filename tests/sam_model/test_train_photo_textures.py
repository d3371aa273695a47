"""Photographic textures for dead-leaves scenes (sam_model.train.photo_textures)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data
from skimage import io as skio

from sam_model.train.__main__ import main as train_main
from sam_model.train.data import BatchPlan, BatchStream, scene_batch
from sam_model.train.photo_textures import (
    SKIMAGE_PHOTOS,
    load_photos,
    paint_photo_regions,
    photo_patch,
)
from sam_model.train.scenes import _Canvas, make_scene
from sam_model.train.scenes_natural import paint_dead_leaves


def test_skimage_photos_leave_out_the_evaluated_images():
    photos = load_photos("skimage")
    assert len(photos) == len(SKIMAGE_PHOTOS) >= 10
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.float32 for p in photos)
    evaluated = [data.coins(), data.immunohistochemistry(), data.cell(),
                 data.hubble_deep_field()]
    for image in evaluated:
        for photo in photos:
            assert photo.shape[:2] != image.shape[:2] or not np.array_equal(
                photo[..., 0], np.asarray(image if image.ndim == 2 else image[..., 0],
                                          np.float32))


def test_a_folder_of_photos_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "textures"
    folder.mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_photos(folder)
    skio.imsave(folder / "a.png", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    skio.imsave(folder / "b.png", rng.integers(0, 255, (40, 40), dtype=np.uint8),
                check_contrast=False)
    (folder / "notes.txt").write_text("not an image")
    photos = load_photos(folder)
    assert [p.shape for p in photos] == [(48, 64, 3), (40, 40, 3)]
    (folder / "c.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="c.png"):
        load_photos(folder)
    (folder / "c.png").unlink()
    skio.imsave(folder / "d.png", np.zeros((8, 8), np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match=r"d\.png.*too small"):
        load_photos(folder)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_photos(tmp_path / "missing")


def test_photo_patch_is_a_zero_mean_piece_of_the_photo():
    """A photo of vertical stripes gives patches constant along one axis (the
    stripes, possibly transposed), of the requested shape and zero mean."""
    x = np.arange(200)
    stripes = np.repeat(((x // 6) % 2 * 200.0)[None, :, None], 150, 0).repeat(3, 2)
    photos = [stripes.astype(np.float32)]
    for seed in range(8):
        patch = photo_patch(np.random.default_rng(seed), photos, (37, 53))
        assert patch.shape == (37, 53, 3) and patch.dtype == np.float32
        assert np.abs(patch.mean((0, 1))).max() < 1e-3
        assert patch.std() > 10
        rows_same = np.allclose(patch, patch[:1], atol=1e-3)
        cols_same = np.allclose(patch, patch[:, :1], atol=1e-3)
        assert rows_same != cols_same


def test_photo_leaves_replace_the_procedural_textures():
    """With photo_prob 1 and a flat photo every leaf is painted in one colour; with
    photo_prob 0 the scene is the procedural one, whatever photos are given."""
    flat = [np.full((64, 64, 3), 90.0, np.float32)]
    textured_leaves = 0
    for seed in range(3):
        canvas = _Canvas(np.random.default_rng(seed), (160, 160))
        paint_dead_leaves(np.random.default_rng([1, seed]), canvas, 160, photos=flat,
                          photo_prob=1.0)
        ids = [pid for pid in np.unique(canvas.labels) if pid]
        assert len(ids) >= 3
        for pid in ids:
            assert canvas.image[canvas.labels == pid].std(0).max() < 0.01
        procedural = _Canvas(np.random.default_rng(seed), (160, 160))
        paint_dead_leaves(np.random.default_rng([1, seed]), procedural, 160)
        textured_leaves += sum(procedural.image[procedural.labels == pid].std(0).max() > 1
                               for pid in np.unique(procedural.labels) if pid)
    assert textured_leaves >= 5
    a = make_scene(np.random.default_rng(4), 128, dead_leaves_prob=1.0, photos=flat,
                   photo_prob=0.0)
    b = make_scene(np.random.default_rng(4), 128, dead_leaves_prob=1.0)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)


def test_plan_photos_reach_the_batches(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "tex"
    folder.mkdir()
    skio.imsave(folder / "noise.png", rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    plan = BatchPlan(crop_sizes=(64,), crop_weights=(1.0,), pixels_per_batch=64 * 64 * 2,
                     objects=2, dead_leaves_prob=1.0, photos=str(folder), photo_prob=1.0)
    with pytest.raises(ValueError, match="photos"):
        scene_batch(0, 0, plan)
    batch = BatchStream(seed=0, plan=plan).batch(0)
    plain = scene_batch(0, 0, BatchPlan(crop_sizes=(64,), crop_weights=(1.0,),
                                        pixels_per_batch=64 * 64 * 2, objects=2,
                                        dead_leaves_prob=1.0))
    assert batch["image"].shape == plain["image"].shape == (2, 64, 64, 3)
    assert not np.array_equal(batch["image"].numpy(), plain["image"].numpy())


def test_train_cli_checks_the_photo_options(tmp_path):
    out = str(tmp_path / "run")
    with pytest.raises(SystemExit, match="need --photos"):
        train_main(["--out", out, "--photo-prob", "0.5", "--steps", "1"])
    with pytest.raises(SystemExit, match="--photos: .*nowhere"):
        train_main(["--out", out, "--photos", str(tmp_path / "nowhere"), "--steps", "1"])
    assert not (tmp_path / "run").exists()


def test_photo_regions_are_the_photos_flat_parts():
    """A photo of flat blocks: region borders lie on the blocks' edges (a region never
    cuts a block), no region is a sliver or most of the window, and at
    photo_regions_prob 0 the stream is unchanged."""
    blocks = np.indices((8, 8)).sum(0) % 2 * np.array([200.0, 150.0, 100.0])[:, None, None]
    photos = [np.repeat(np.repeat(blocks.transpose(1, 2, 0), 64, 0), 64, 1).astype(np.float32)]
    found = 0
    for seed in range(4):
        canvas = _Canvas(np.random.default_rng(seed), (192, 192))
        paint_photo_regions(np.random.default_rng([2, seed]), canvas, photos)
        lab, img = canvas.labels, canvas.image
        for a, b, ia, ib in ((lab[:, :-1], lab[:, 1:], img[:, :-1], img[:, 1:]),
                             (lab[:-1], lab[1:], img[:-1], img[1:])):
            border = (a != b) & (a > 0) & (b > 0)
            step = np.abs(ia - ib).max(-1)  # colour step across each pixel pair
            near_edge = ndi.maximum_filter(step, size=5) > 10
            assert near_edge[border].all()
        for (pid,) in canvas.objects:
            inside = lab == pid
            assert canvas.areas[pid] == inside.sum()  # the painted area of that object
            assert inside.sum() <= 0.6 * inside.size
            assert ndi.distance_transform_edt(np.pad(inside, 1)).max() >= 2
            found += 1
    assert found >= 4
    a = make_scene(np.random.default_rng(4), 128, dead_leaves_prob=0.5, photos=photos,
                   photo_regions_prob=0.0)
    b = make_scene(np.random.default_rng(4), 128, dead_leaves_prob=0.5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    s = make_scene(np.random.default_rng(4), 128, photos=photos, photo_regions_prob=1.0)
    assert len(s.objects) >= 1 and not np.array_equal(s.image, b.image)
