"""The automatic benchmark's scoring: recall, seam splits, seam cuts and their controls."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_recall import score


def test_split_rates_tell_seam_splits_from_the_model_s_own():
    truth = np.zeros((2048, 2048), np.int32)
    labels = np.zeros_like(truth)
    truth[100:200, 850:950] = 1  # crosses the seam at x 896 (tile 1024, overlap 128)
    labels[100:200, 850:900] = 1  # ... and comes out in two halves
    labels[100:200, 900:950] = 2
    truth[300:400, 850:950] = 2  # crosses it too, one id
    labels[300:400, 850:950] = 3
    truth[500:600, 100:200] = 3  # no seam, two halves
    labels[500:600, 100:150] = 4
    labels[500:600, 150:200] = 5
    truth[700:800, 100:200] = 4  # no seam, found whole
    labels[700:800, 100:200] = 6
    truth[1000:1100, 1000:1100] = 5  # missed
    truth[1200:1300, 100:200] = 6  # no seam, found whole
    labels[1200:1300, 100:200] = 7
    truth[1400:1600, 850:950] = 7  # crosses the seam, split by the model across it:
    labels[1400:1500, 850:950] = 8  # top and bottom halves, each one id on both sides
    labels[1500:1600, 850:950] = 9
    truth[1850:1950, 400:500] = 8  # crosses the line halfway between seams (x 448) and
    labels[1850:1950, 400:430] = 10  # changes id there: the control's case
    labels[1850:1950, 430:500] = 11
    out = score(truth, labels, tile=1024)
    assert out["objects"] == 8 and out["recall"] == 0.5
    assert out["seam_objects_found"] == 3 and out["split_rate"] == 0.667
    assert out["split_rate_no_seam"] == 0.5 and out["split_rate_seam_up_to_tile"] == 0.667
    assert out["larger_than_tile"] == 0
    assert out["seam_cut_rate"] == 0.333  # only object 1's id changes at the seam
    assert out["seam_cut_rate_mid_tile"] == 1.0  # object 8, the only one crossing x 448
