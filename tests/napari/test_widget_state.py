"""Widget configuration values and the GUI/core seam, without a viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._widgets.state import (
    AutomaticConfig,
    Candidates,
    ExportConfig,
    ModelChoice,
    TilingChoice,
    config_fields,
)
from napari_sam.core.automatic.settings import DEFAULT_MIN_AREA, SegmentConfig


class _W:
    """A stand-in widget: attributes holding ``.value``."""

    def __init__(self, **values):
        for name, value in values.items():
            setattr(self, name, type("V", (), {"value": value})())


def test_model_choice_round_trip_and_empty_checkpoint():
    widget = _W(model_name="vit_b", checkpoint=".", device="cpu")
    choice = ModelChoice.from_widget(widget)
    assert choice == ModelChoice(name="vit_b", checkpoint=None, device="cpu")
    assert hash(choice) == hash(ModelChoice(name="vit_b", device="cpu"))
    ModelChoice(name="sam_tiny", checkpoint="/x/m.pt", device="auto").apply(widget)
    assert (widget.model_name.value, widget.checkpoint.value) == ("sam_tiny", "/x/m.pt")


def test_tiling_and_automatic_validation():
    with pytest.raises(ValueError, match="overlap"):
        TilingChoice(tile_size=256, overlap=256)
    with pytest.raises(ValueError, match="at least 16"):
        TilingChoice(tile_size=8)
    assert TilingChoice().core_kwargs() == {"tile_size": None, "overlap": None}  # core's
    assert TilingChoice(tile_size=512, overlap=0).core_kwargs() == {"tile_size": 512,
                                                                     "overlap": 0}
    cfg = AutomaticConfig(segment=SegmentConfig(points_per_side=8), store=".", out_dir="/tmp/out")
    assert cfg.segment.points_per_side == 8 and cfg.segment.max_area is None
    assert (cfg.store, cfg.out_dir) == ("", "/tmp/out")


def test_automatic_config_from_widget_and_apply():
    d = AutomaticConfig()
    names = AutomaticConfig.segment_widget_fields
    widget = _W(**{n: getattr(d.segment, n) or 0 for n in names},
                **{n: getattr(d, n) for n in AutomaticConfig._widget_fields})
    widget.scales.value = "1,2,4"  # a text box
    assert {"min_area", "min_region_area", "stitch_seams", "points", "scales",
            "refine"} <= set(names)
    assert set(names) <= set(config_fields(SegmentConfig))  # the widget shows core's settings
    widget.points_per_side.value = 4
    widget.max_area.value = 900
    widget.stitch_seams.value = False
    cfg = AutomaticConfig.from_widget(widget)
    assert cfg.segment == SegmentConfig(points_per_side=4, max_area=900, stitch_seams=False,
                                        min_area=DEFAULT_MIN_AREA)  # the widget's default
    widget.max_area.value = 0
    assert AutomaticConfig.from_widget(widget).segment.max_area is None  # 0: no limit
    widget.points.value, widget.scales.value, widget.refine.value = "full", " 1, 4", "coarse"
    seg = AutomaticConfig.from_widget(widget).segment
    assert (seg.points, seg.scales, seg.refine) == ("full", (1, 4), "coarse")
    for bad, message in (("2,4", "start at 1"), ("1,x", "integers"), ("1,4,2", "increase")):
        widget.scales.value = bad
        with pytest.raises(ValueError, match=message):
            AutomaticConfig.from_widget(widget)
    widget.scales.value, widget.refine.value = "1,2,4", "sometimes"
    with pytest.raises(ValueError, match="refine"):
        AutomaticConfig.from_widget(widget)
    widget.refine.value = "none"
    with pytest.raises(ValueError, match="max_area"):
        widget.max_area.value, widget.min_area.value = 10, 50
        AutomaticConfig.from_widget(widget)
    AutomaticConfig(segment=SegmentConfig(points_per_side=12, scales=(1, 8),
                                          refine="all")).apply(widget)
    assert widget.points_per_side.value == 12 and widget.max_area.value == 0
    assert (widget.scales.value, widget.refine.value, widget.points.value) == ("1,8", "all",
                                                                               "coarse")
    assert widget.stitch_seams.value is True


def test_export_config_normalises_paths_and_checks_format():
    cfg = ExportConfig(labels_path=".", vectors_path="out.gpkg")
    assert cfg.labels_path == "" and cfg.vectors_path == "out.gpkg"
    with pytest.raises(ValueError, match="vector format"):
        ExportConfig(vector_format="kml")


def test_candidates_order_and_labels():
    masks = np.zeros((3, 4, 5), dtype=bool)
    masks[0, :2] = True
    masks[1, :1, :1] = True
    masks[2] = True
    cands = Candidates(masks=masks, scores=np.array([0.5, 0.9, 0.7]), offset=(10, 20))
    assert cands.order == [1, 2, 0]
    assert cands.labels() == ["1: IoU 0.90, 1 px", "2: IoU 0.70, 20 px", "3: IoU 0.50, 10 px"]
    with pytest.raises(ValueError):
        Candidates(masks=masks, scores=np.ones(2), offset=(0, 0))
