"""Progress inside one network call: the hooks report encoder blocks and every decoder pass
(through ``forward`` or ``run_transformer``) and stop a cancelled task inside the model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._widgets.activity import Activity, Interrupted, Watch, watch_model


def test_decoder_passes_counted_from_both_entry_points_and_cancel_stops_them(tiny_model):
    import torch

    from sam_model.predictor import SamPredictor

    watch_model(tiny_model)
    seen: list[Activity] = []
    predictor = SamPredictor(tiny_model)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    point = (np.array([[20.0, 30.0]]), np.array([1]))
    predictor.set_image(image)
    predictor.predict(*point)  # outside a watch: nothing reported, nothing raised
    with Watch(seen.append) as watch:
        predictor.set_image(image)
        fractions = [a.fraction for a in seen if a.kind == "encoder"]
        assert fractions[0] == 0.0 and fractions[-1] > 0.5  # blocks started, in order
        assert fractions == sorted(fractions)
        predictor.predict(*point)  # the decoder's forward
        decoder = tiny_model.mask_decoder
        sparse, dense = tiny_model.prompt_encoder(points=(torch.zeros(4, 1, 2),
                                                          torch.ones(4, 1)),
                                                  boxes=None, masks=None)
        with torch.no_grad():  # the automatic generator's entry: the transformer alone
            decoder.run_transformer(predictor.features, tiny_model.prompt_encoder.get_dense_pe(),
                                    sparse, dense)
        assert [a.calls for a in seen if a.kind == "decoder"] == [1, 2]
        watch.cancel()
        with pytest.raises(Interrupted):
            predictor.predict(*point)


def test_automatic_progress_inside_a_tile_with_the_devices_batch(make_napari_viewer,
                                                                 model_factory):
    """Points per batch 0 (the device's choice, the default) must not break the progress
    shown between tiles (it divided by the widget's 0)."""
    from napari_sam._widgets.automatic import AutomaticWidget
    from napari_sam.core.progress import Progress

    widget = AutomaticWidget(make_napari_viewer(), model_factory=model_factory,
                             model_names=["sam_tiny"])
    assert widget.points_per_batch.value == 0
    widget.points_per_side.value = 8
    widget._per_batch, widget._full_grid = 16, True  # what a full-grid run on the CPU sets
    widget._event(Progress("tiles", 1, 4))
    widget._activity(Activity("decoder", calls=2))
    assert widget.status.value.endswith("(50% of the next tile)")
    assert widget.progress.value == 150
    # coarse-to-fine: a count, the bar stays at the tile boundary
    widget._full_grid = False
    widget._event(Progress("tiles", 2, 4))
    widget._activity(Activity("decoder", calls=9))
    assert widget.status.value.endswith("(7 decoder calls in the next tile)")
    widget._activity(Activity("decoder", calls=3))
    assert widget.status.value.endswith("(1 decoder call in the next tile)")
    assert widget.progress.value == 200


def test_cnn_trunk_blocks_report_encoder_progress():
    """sam_lite0's trunk (most of its encoder's time) runs its 16 blocks inside one module:
    each of them reports, so the progress climbs while the trunk runs instead of sitting
    at a few percent until it returns."""
    from sam_model.predictor import SamPredictor
    from sam_model.sam_lite0 import build_sam_lite0

    model = watch_model(build_sam_lite0(pretrained=False, img_size=128))
    seen: list[Activity] = []
    at_trunk_end = []
    model.image_encoder.trunk._blocks[-1].register_forward_hook(
        lambda *_: at_trunk_end.append([a.fraction for a in seen if a.kind == "encoder"]))
    predictor = SamPredictor(model)
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    with Watch(seen.append):
        predictor.set_image(image)
    fractions = [a.fraction for a in seen if a.kind == "encoder"]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.5
    during_trunk = at_trunk_end[0]
    assert len(during_trunk) >= 16 and np.diff(during_trunk).max() <= 0.1
