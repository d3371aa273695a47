"""Scenes of large regions made of many small parts (--parts-prob)."""

import numpy as np
from scipy import ndimage as ndi

from sam_model.train.scenes import make_scene
from sam_model.train.scenes_tissue import part_layer


def _spots(image, mask):
    """How many distinct parts (4-connected runs of near-equal colour) lie in ``mask``."""
    grey = image.astype(np.float32).mean(-1)
    gy = np.abs(np.diff(grey, axis=0))[:, :-1]
    gx = np.abs(np.diff(grey, axis=1))[:-1, :]
    edges = np.zeros_like(mask)
    edges[:-1, :-1] = (gy > 6) | (gx > 6)
    _, n = ndi.label(mask & ~edges)
    return n


def test_part_regions_are_large_objects_made_of_many_parts():
    """Each object is a large region (a gland, a field), and inside it lie many small
    parts, not one flat colour; at 0 the random stream is the default one."""
    size = 512
    scenes = [make_scene(np.random.default_rng([6, i]), size, parts_prob=1.0)
              for i in range(6)]
    areas = [int(s.mask(i).sum()) for s in scenes for i in range(len(s.objects))]
    assert len(areas) >= 6
    assert np.median(areas) >= 0.01 * size * size  # regions, not cells
    parted = 0
    for s in scenes:
        for i in range(len(s.objects)):
            m = ndi.binary_erosion(s.mask(i), iterations=2)
            if m.sum() >= 2000:
                parted += _spots(s.image, m) >= 10
                assert _spots(s.image, m) >= 3
    assert parted >= 3
    plain = make_scene(np.random.default_rng(5), size)
    assert np.array_equal(make_scene(np.random.default_rng(5), size, parts_prob=0.0).image,
                          plain.image)


def test_part_layer_fills_its_share_with_palette_spots():
    rng = np.random.default_rng(1)
    ground = np.array([200.0, 60.0, 60.0], np.float32)
    palette = np.array([[20.0, 40.0, 220.0]], np.float32)
    img = part_layer(rng, (256, 256), ground, palette, cell=8.0, fill=0.4, nuclei=False)
    blue = img[..., 2] > img[..., 0]
    assert 0.3 < blue.mean() < 0.5
    _, n = ndi.label(blue)
    assert n >= 20  # many parts, not one blob
