"""SAM 2.1 propagation driver against the reference ``SAM2VideoPredictor``.

The hiera_tiny layout at 128 px with perturbed random weights, loaded by both;
a generated 6-frame clip of 96x144 frames (a square moving over noise),
prompted on frame 2 (a click, a box, or a mask), propagated forward to the end
then backward to frame 0 in one state, as the official demo does. The
reference is built from its hydra config as ``build_sam2_video_predictor``
does, with ``fill_hole_area=0`` (its hole filling needs a CUDA extension; ours
has none); its frame loader is replaced by the frames our driver makes (the
resize to 128 px is the image predictor's, tested elsewhere). Both store
memories in bfloat16.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sam_helpers import perturb_, reference_sam2

import sam_model
from sam_model.sam2_video import Sam2VideoPropagator

S = 128
H, W = 96, 144
N_FRAMES = 6
START = 2


def _square(t: int) -> tuple[int, int, int, int]:
    """(y, x, h, w) of the square on frame t."""
    return 30 + 3 * t, 20 + 9 * t, 28, 40


def _clip() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    frames = []
    for t in range(N_FRAMES):
        img = rng.normal(90, 25, (H, W, 3))
        y, x, h, w = _square(t)
        img[y:y + h, x:x + w] += 110
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    ref = perturb_(reference_sam2(S, video=True), seed=5, scale=0.02)
    ours = sam_model.build_sam("sam2.1_hiera_tiny", pretrained=False, img_size=S)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def _prepared(model, frames) -> torch.Tensor:
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
    return model.normalize(x)


def _prompt(kind: str) -> dict:
    y, x, h, w = _square(START)
    if kind == "click":
        return {"points": [[x + w / 2, y + h / 2]], "labels": [1]}
    if kind == "box":
        return {"box": [x - 2, y - 2, x + w + 2, y + h + 2]}
    mask = np.zeros((H, W), bool)
    mask[y:y + h, x:x + w] = True
    return {"mask": mask}


def _reference_run(ref, images, prompt, monkeypatch) -> tuple[dict[int, list[np.ndarray]], dict]:
    import sam2.sam2_video_predictor as vp

    monkeypatch.setattr(vp, "load_video_frames", lambda **_: (images, H, W))
    state = ref.init_state(video_path="unused")
    if "mask" in prompt:
        ref.add_new_mask(state, START, 1, prompt["mask"])
    else:
        ref.add_new_points_or_box(state, START, 1, points=prompt.get("points"),
                                  labels=prompt.get("labels"), box=prompt.get("box"))
    out: dict[int, list[np.ndarray]] = {}
    for reverse in (False, True):
        for t, _, masks in ref.propagate_in_video(state, start_frame_idx=START, reverse=reverse):
            out.setdefault(t, []).append(masks[0, 0].float().numpy())
    return out, state["output_dict_per_obj"][0]


@pytest.mark.parametrize("kind", ["click", "box", "mask"])
def test_propagation_matches_video_predictor(models, kind, monkeypatch):
    ours, ref = models
    frames = _clip()
    prompt = _prompt(kind)
    with torch.inference_mode():
        theirs, kept = _reference_run(ref, _prepared(ours, frames), prompt, monkeypatch)
    calls: list[int] = []

    def frame(i: int) -> np.ndarray:
        calls.append(i)
        return frames[i]

    prop = Sam2VideoPropagator(ours, frame=frame, num_frames=N_FRAMES)
    first = prop.add_prompt(START, **prompt)
    mine = {START: first}
    for reverse in (False, True):
        for out in prop.propagate(reverse=reverse):
            assert out.index not in mine
            mine[out.index] = out
    assert sorted(mine) == list(range(N_FRAMES))
    assert calls == [2, 3, 4, 5, 1, 0]  # lazily, each frame once
    for t, out in mine.items():
        assert out.logits.shape == (H, W)
        for expected in theirs[t]:  # the prompted frame comes out of both passes
            np.testing.assert_allclose(out.logits, expected, atol=2e-3, rtol=1e-3)
            assert np.array_equal(out.mask, expected > 0)
    assert mine[N_FRAMES - 1].mask.sum() > 100  # the object is followed, not lost
    # what the frames leave for later ones: pointers, scores, bfloat16 memories
    held = {**prop.tracker.tracked, **prop.tracker.prompted}
    assert sorted(held) == list(range(N_FRAMES))  # a short clip: nothing dropped
    for t, result in held.items():
        ref_out = kept["cond_frame_outputs" if t == START else "non_cond_frame_outputs"][t]
        torch.testing.assert_close(result.obj_ptr, ref_out["obj_ptr"], atol=5e-5, rtol=1e-4)
        torch.testing.assert_close(result.object_score, ref_out["object_score_logits"],
                                   atol=5e-5, rtol=1e-4)
        assert result.memory.dtype == ref_out["maskmem_features"].dtype == torch.bfloat16
        torch.testing.assert_close(result.memory.float(), ref_out["maskmem_features"].float(),
                                   atol=2e-2, rtol=1e-2)


def test_memory_bank_stays_bounded(models):
    ours, _ = models
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    n = 34
    prop = Sam2VideoPropagator(ours, frame=lambda i: frame, num_frames=n)
    prop.add_prompt(4, points=[[32, 32]], labels=[1])
    counts = [prop.stored_frames for _ in prop.propagate()]
    assert len(counts) == n - 5
    keep = prop.keep
    assert keep == 15
    # the prompted frame, the 14 frames next to it (the backward pass reads them)
    # and the 15 frames the next frame reads
    assert max(counts) == 2 * keep
    assert counts[-1] == 2 * keep
    for result in prop.tracker.tracked.values():
        assert result.high_res is None and result.memory.dtype == torch.bfloat16
    assert prop.stored_frames == keep  # the forward pass is over: its tail is dropped
    assert sorted(prop.tracker.tracked) == list(range(5, 4 + keep))
    back = [prop.stored_frames for _ in prop.propagate(reverse=True)]
    assert back == [keep + i for i in range(1, 5)]
