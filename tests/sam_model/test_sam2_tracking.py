"""SAM 2.1's memory step against the reference ``SAM2Base.track_step``.

The real hiera_tiny layout at 128 px with perturbed random weights, loaded by
both; a generated 5-frame clip (a square moving over noise) with a click on
the first frame (forward) or the last frame (backward); every later frame is
conditioned on the memories and object pointers of the frames before it. The
reference is given the frames' outputs the way its video predictor files them
(prompted frames apart from tracked ones); its bfloat16 storage of memories
is not part of ``track_step`` and not reproduced here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam_helpers import perturb_, reference_sam2

import sam_model
from sam_model.sam2_tracking import Sam2Tracker

S = 128
N_FRAMES = 5


def _clip():
    rng = np.random.default_rng(7)
    frames = []
    for t in range(N_FRAMES):
        img = rng.normal(0, 0.3, (3, S, S)).astype(np.float32)
        y, x = 40 + 3 * t, 30 + 5 * t
        img[:, y:y + 30, x:x + 35] += 1.5
        frames.append(torch.from_numpy(img)[None])
    return frames


@pytest.fixture(scope="module")
def models():
    """(ours, reference, each frame through both image encoders)."""
    torch.manual_seed(0)
    ref = perturb_(reference_sam2(S), seed=5, scale=0.02)
    ours = sam_model.build_sam("sam2.1_hiera_tiny", pretrained=False, img_size=S)
    ours.load_state_dict(ref.state_dict(), strict=True)
    tracker = Sam2Tracker(ours, num_frames=N_FRAMES)
    ours_feats, ref_feats = [], []
    with torch.no_grad():
        for frame in _clip():
            ours_feats.append(tracker.features(frame))
            ref_feats.append(ref._prepare_backbone_features(ref.forward_image(frame))[1:])
    return ours, ref, ours_feats, ref_feats


def _reference_run(ref, ref_feats, order, click):
    output = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    for i, t in enumerate(order):
        feats, pos, sizes = ref_feats[t]
        points = None
        if i == 0:
            points = {"point_coords": click[0], "point_labels": click[1].to(torch.int32)}
        with torch.no_grad():
            out = ref.track_step(t, i == 0, feats, pos, sizes, points, None, output, N_FRAMES,
                                 track_in_reverse=order[0] > order[-1])
        output["cond_frame_outputs" if i == 0 else "non_cond_frame_outputs"][t] = out
    return {**output["cond_frame_outputs"], **output["non_cond_frame_outputs"]}


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_tracking_matches_track_step(models, direction):
    ours, ref, ours_feats, ref_feats = models
    order = list(range(N_FRAMES)) if direction == "forward" else list(reversed(range(N_FRAMES)))
    start = order[0]
    y, x = 40 + 3 * start + 15, 30 + 5 * start + 17
    click = (torch.tensor([[[float(x), float(y)]]]), torch.tensor([[1]]))
    theirs = _reference_run(ref, ref_feats, order, click)
    tracker = Sam2Tracker(ours, num_frames=N_FRAMES)
    for i, t in enumerate(order):
        mine = tracker.step(t, ours_feats[t], points=click if i == 0 else None,
                            reverse=direction == "backward")
        ref_out = theirs[t]
        torch.testing.assert_close(mine.low_res, ref_out["pred_masks"], atol=5e-4, rtol=1e-4)
        torch.testing.assert_close(mine.high_res, ref_out["pred_masks_high_res"], atol=5e-4,
                                   rtol=1e-4)
        torch.testing.assert_close(mine.obj_ptr, ref_out["obj_ptr"], atol=5e-5, rtol=1e-4)
        torch.testing.assert_close(mine.object_score, ref_out["object_score_logits"], atol=5e-5,
                                   rtol=1e-4)
        torch.testing.assert_close(mine.memory, ref_out["maskmem_features"], atol=5e-5,
                                   rtol=1e-4)
    assert len(tracker.prompted) == 1 and len(tracker.tracked) == N_FRAMES - 1
