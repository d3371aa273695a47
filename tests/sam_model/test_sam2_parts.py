"""SAM 2.1 parts on a tiny random model (no reference package): packing of the
embedding, restored embeddings, tiles, the tiled engine's store, checkpoints,
windows and the model table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam_helpers import perturb_

import sam_model
from sam_model.hiera import window_partition, window_unpartition
from sam_model.sam2_configs import tiny_sam2_test_config
from sam_model.sam2_model import Sam2, build_sam2_from_config


@pytest.fixture(scope="module")
def tiny2():
    torch.manual_seed(0)
    return perturb_(build_sam2_from_config(tiny_sam2_test_config()), seed=1, scale=0.05)


def _image(h=90, w=120, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[20:60, 30:90] = (230, 200, 60)
    return img


def test_pack_and_unpack_are_exact(tiny2):
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(2, 32, 8, 8, generator=gen)
    high = [torch.randn(2, 4, 32, 32, generator=gen), torch.randn(2, 8, 16, 16, generator=gen)]
    packed = Sam2.pack_embedding(emb, high)
    assert packed.shape == (2, tiny2.embedding_channels, 8, 8) == (2, 128, 8, 8)
    e, (s0, s1) = tiny2.unpack_embedding(packed)
    assert torch.equal(e, emb) and torch.equal(s0, high[0]) and torch.equal(s1, high[1])
    with pytest.raises(ValueError, match="packed embedding"):
        tiny2.unpack_embedding(emb)


def test_restored_embedding_gives_the_same_masks(tiny2):
    live = sam_model.SamPredictor(tiny2)
    live.set_image(_image())
    packed = live.get_packed_embedding()
    restored = sam_model.SamPredictor(tiny2)
    restored.set_image_embedding(packed, original_size=(90, 120))
    kwargs = dict(point_coords=np.array([[60, 40]]), point_labels=np.array([1]),
                  box=np.array([30, 20, 90, 60]), return_logits=True)
    for a, b in zip(live.predict(**kwargs), restored.predict(**kwargs)):
        np.testing.assert_array_equal(a, b)
    separate = sam_model.SamPredictor(tiny2)
    separate.set_image_embedding(live.features, (90, 120),
                                 high_res_features=live.high_res_features)
    np.testing.assert_array_equal(separate.predict(**kwargs)[0], live.predict(**kwargs)[0])
    with pytest.raises(sam_model.SamModelError, match="packed SAM 2 embedding"):
        restored.set_image_embedding(live.features, original_size=(90, 120))


def test_padded_tile_maps_prompts_one_to_one(tiny2):
    """A tile embedded unresized (padded to 128) is prompted in its own pixels;
    its masks are the decoder output upscaled to 128, cropped to the tile."""
    tile = _image(100, 70)
    x = torch.from_numpy(tile).permute(2, 0, 1)[None].float()
    packed = sam_model.encode_images(tiny2, x)
    assert packed.shape == (1, 128, 8, 8)
    with torch.no_grad():
        emb, high = tiny2.encode(tiny2.preprocess(x))
    assert torch.equal(packed, Sam2.pack_embedding(emb, high))
    pred = sam_model.SamPredictor(tiny2)
    pred.set_image_embedding(packed, original_size=(100, 70), input_size=(100, 70))
    masks, iou, low = pred.predict(point_coords=np.array([[35, 50]]), point_labels=np.array([1]),
                                   multimask_output=True, return_logits=True)
    assert masks.shape == (3, 100, 70) and low.shape == (3, 32, 32)
    up = torch.nn.functional.interpolate(torch.from_numpy(low)[:, None], (128, 128),
                                         mode="bilinear", align_corners=False)[:, 0, :100, :70]
    np.testing.assert_allclose(masks, up.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="exceed the model input size"):
        sam_model.encode_images(tiny2, torch.zeros(1, 3, 130, 64))


def test_low_res_logits_are_clamped_and_masks_thresholded(tiny2):
    """Sharpened hypernetworks give logits beyond ±32: the low-res ones returned are
    clamped, the full-size ones (made before clamping) are not."""
    pred = sam_model.SamPredictor(tiny2)
    pred.set_image(_image())
    heads = [m.layers[-1] for m in tiny2.mask_decoder.output_hypernetworks_mlps]
    with torch.no_grad():
        for layer in heads:
            layer.weight.mul_(200.0)
    try:
        logits, _, low = pred.predict(box=np.array([30, 20, 90, 60]), return_logits=True)
        masks, _, _ = pred.predict(box=np.array([30, 20, 90, 60]))
    finally:
        with torch.no_grad():
            for layer in heads:
                layer.weight.div_(200.0)
    assert np.abs(low).max() == 32.0 and np.abs(logits).max() > 32.0
    np.testing.assert_array_equal(masks, logits > 0)


def test_tiled_engine_stores_and_reuses_a_sam2_embedding(tiny2, tmp_path):
    from napari_sam.core.prompt.predictor import RasterPredictor
    from napari_sam.core.tiling.embed import embed_raster
    from napari_sam.core.tiling.store import EmbeddingStore

    img = _image(128, 200, seed=2)
    path = tmp_path / "s2.zarr"
    gen = embed_raster(img, path, tiny2, overlap=16, device="cpu")
    for _ in gen:
        pass
    store = EmbeddingStore.open(path)
    assert store.complete and store.settings.embed_shape == (128, 8, 8)
    stored = RasterPredictor(model=tiny2, raster=img, store=path).predict([[60, 40]])
    fresh = RasterPredictor(model=tiny2, raster=img, overlap=16).predict([[60, 40]])
    assert stored.masks.shape == fresh.masks.shape and fresh.masks.any()
    inter, union = (stored.masks & fresh.masks).sum(), (stored.masks | fresh.masks).sum()
    assert inter / union > 0.98  # float16 storage


def test_window_partition_round_trip_with_padding():
    x = torch.randn(2, 10, 7, 3)
    windows, padded = window_partition(x, 4)
    assert windows.shape == (2 * 3 * 2, 4, 4, 3) and padded == (12, 8)
    assert torch.equal(windows[0], x[0, :4, :4])
    assert torch.equal(windows[5, :2, :3], x[0, 8:, 4:])  # last window of image 0, unpadded part
    assert torch.count_nonzero(windows[5, 2:]) == 0
    assert torch.equal(window_unpartition(windows, 4, padded, (10, 7)), x)


def test_position_embedding_cache_follows_the_weights(tiny2):
    trunk = tiny2.image_encoder.trunk
    with torch.no_grad():
        first = trunk.position_embedding(32, 32).clone()
        trunk.pos_embed_window.add_(1.0)
        try:
            assert torch.allclose(trunk.position_embedding(32, 32), first + 1.0)
        finally:
            trunk.pos_embed_window.sub_(1.0)
    with pytest.raises(ValueError, match="multiple of 16 px"):
        trunk.position_embedding(30, 32)


def test_checkpoint_is_loaded_strictly(tiny2, tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": tiny2.state_dict()}, good)
    other = build_sam2_from_config(tiny_sam2_test_config())
    sam_model.load_checkpoint(other, good)
    for key, value in tiny2.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)
    state = dict(tiny2.state_dict())
    state.pop("no_obj_ptr")
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save({"model": state}, bad)
    with pytest.raises(sam_model.CheckpointError, match="bad.pt.*missing keys.*no_obj_ptr"):
        sam_model.load_checkpoint(other, bad)


def test_model_table_lists_the_four_sizes():
    names = ["sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus",
             "sam2.1_hiera_large"]
    assert all(name in sam_model.list_models() for name in names)
    with torch.device("meta"):
        model = sam_model.build_sam("sam2.1_hiera_small", pretrained=False, img_size=512)
    assert isinstance(model, Sam2) and model.img_size == 512
    assert model.prompt_encoder.image_embedding_size == (32, 32)


def test_official_layouts_are_recognised():
    from sam_model.checkpoint import check_state_dict

    with torch.device("meta"):
        small = sam_model.build_sam("sam2.1_hiera_small", pretrained=False).state_dict()
        tiny = sam_model.build_sam("sam2.1_hiera_tiny", pretrained=False)
    assert sam_model.architecture_of(small) == "sam2.1_hiera_small"
    with pytest.raises(sam_model.CheckpointError,
                       match="f.pt: this is a 'sam2.1_hiera_small' checkpoint.*sam2.1_hiera_tiny"):
        check_state_dict(tiny, small, source="f.pt", model_name="sam2.1_hiera_tiny")
    entry = sam_model.MODELS["sam2.1_hiera_base_plus"]
    assert entry.architecture == "sam2.1_hiera_base_plus" and len(entry.sha256) == 64
    assert entry.size is None  # no published byte size
    assert entry.urls[0].endswith("/092824/sam2.1_hiera_base_plus.pt")


def test_automatic_decoding_on_a_tile_matches_the_predictor(tiny2):
    """decode_points (the tiled engine's automatic path) on a SAM 2 tile
    embedding: the same low-res logits and masks as the predictor's prompts."""
    from sam_model.mask_candidates import decode_low_res

    tile = _image(100, 70)
    packed = sam_model.encode_images(tiny2, torch.from_numpy(tile).permute(2, 0, 1)[None].float())
    pred = sam_model.SamPredictor(tiny2)
    pred.set_image_embedding(packed, original_size=(100, 70), input_size=(100, 70))
    points = np.array([[35.0, 50.0], [10.0, 20.0], [60.0, 90.0]])
    low, iou = decode_low_res(pred, points)
    for i, p in enumerate(points):
        logits, iou_i, _ = pred.predict(point_coords=p[None], point_labels=np.array([1]),
                                        return_logits=True)
        np.testing.assert_allclose(iou[i].numpy(), iou_i, atol=1e-6)
        up = tiny2.postprocess_masks(low[i:i + 1], (100, 70), (100, 70))[0].numpy()
        np.testing.assert_allclose(up, logits, atol=1e-5)
    batch = sam_model.decode_points(pred, points, pred_iou_thresh=0.0,
                                    stability_score_thresh=0.0, box_nms_thresh=1.0)
    assert len(batch.crops) == 9  # 3 candidates per point, no filter
    best = int(np.argmax(batch.iou_preds.numpy()))
    x0, y0, x1, y1 = batch.boxes[best].tolist()
    p = batch.points[best].numpy()
    masks, scores, _ = pred.predict(point_coords=p[None], point_labels=np.array([1]))
    k = int(np.argmin(np.abs(scores - float(batch.iou_preds[best]))))
    assert np.array_equal(masks[k][y0:y1 + 1, x0:x1 + 1], batch.crops[best])
    assert sam_model.automatic_thresholds("sam2.1_hiera_tiny") == {
        "pred_iou_thresh": 0.8, "stability_score_thresh": 0.95}


def test_tiled_automatic_segmentation_runs_with_sam2(tiny2):
    from napari_sam.core import progress
    from napari_sam.core.automatic.decode import SegmentConfig, segment_tiles
    from napari_sam.core.io.raster_open import open_raster
    from napari_sam.core.tiling.grid import TileGrid

    image = _image(150, 200, seed=4)
    grid = TileGrid(height=150, width=200, tile_size=128, overlap=32)

    def embedding_for(index):
        t = grid.tile_for(*index)
        x = torch.from_numpy(image[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width]
                             .astype(np.float32)).permute(2, 0, 1)[None]
        return sam_model.encode_images(tiny2, x)[0].numpy(), (t.height, t.width)

    labels = np.zeros(image.shape[:2], np.uint32)

    def sink(y0, x0, block):
        labels[y0:y0 + block.shape[0], x0:x0 + block.shape[1]] = block

    # every grid point (a noise image has no blob for the finest coarse-to-fine level)
    config = SegmentConfig(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                           edge_margin=-1, points="full")
    result = progress.run(segment_tiles(open_raster(image), grid, embedding_for, tiny2,
                                        config=config, sink=sink))
    assert result.n_tiles == 4 and result.stats.candidates > 0 and result.objects
    for r in result.objects:
        assert (labels == r.id).sum() == r.area
