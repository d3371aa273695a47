"""Two objects at once against the reference ``SAM2VideoPredictor`` (issue 16).

The hiera_tiny layout at 128 px with perturbed random weights, loaded by both
(as tests/sam_model/test_sam2_video.py); a generated 7-frame clip of 96x144
frames with two squares moving different ways; object 1 clicked on frame 1,
object 2 boxed on frame 3. Both propagate forward then backward in one state
(the passes start at frame 1, the earliest prompted frame): every frame each
pass yields, and every object's mask logits on it, must agree, in the same
order; object 2 is tracked on frames 1 and 2, before its own prompted frame,
from its memory of frame 3, as the reference does.

On frame 1 of the forward pass the reference attends for object 2 to a
bfloat16 memory and no object pointer (the only pointer, frame 3's, lies ahead), which its float32 CPU path cannot run
(``F.linear`` of bfloat16 by float32; with a pointer the concatenation makes the
memory float32, and the official runs use bfloat16 autocast on a GPU): the test
gives the reference's memory attention its memory as float32, as ours takes it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sam_helpers import perturb_, reference_sam2

import sam_model
from sam_model.sam2_objects import FrameObjects, Sam2ObjectsPropagator
from sam_model.sam2_video import PropagatedFrame, Sam2VideoPropagator

S = 128
H, W = 96, 144
N_FRAMES = 7


def _squares(t: int) -> list[tuple[int, int, int, int]]:
    """(y, x, h, w) of object 1 (moving right) and object 2 (moving down) on frame t."""
    return [(10 + t, 8 + 8 * t, 24, 30), (40 + 5 * t, 100 - 2 * t, 22, 26)]


def _clip() -> list[np.ndarray]:
    rng = np.random.default_rng(21)
    frames = []
    for t in range(N_FRAMES):
        img = rng.normal(90, 25, (H, W, 3))
        for (y, x, h, w), add in zip(_squares(t), (110, -70)):
            img[y:y + h, x:x + w] += add
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def _prompts() -> list[tuple[int, int, dict]]:
    """(frame, object id, prompt) for both objects."""
    y, x, h, w = _squares(1)[0]
    y2, x2, h2, w2 = _squares(3)[1]
    return [(1, 1, {"points": [[x + w / 2, y + h / 2]], "labels": [1]}),
            (3, 2, {"box": [x2 - 2, y2 - 2, x2 + w2 + 2, y2 + h2 + 2]})]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    ref = perturb_(reference_sam2(S, video=True), seed=5, scale=0.02)
    ours = sam_model.build_sam("sam2.1_hiera_tiny", pretrained=False, img_size=S)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def _reference_run(ref, ours, frames, monkeypatch) -> list[tuple[int, np.ndarray]]:
    import sam2.sam2_video_predictor as vp

    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
    monkeypatch.setattr(vp, "load_video_frames", lambda **_: (ours.normalize(x), H, W))
    attend = ref.memory_attention.forward

    def float_memory(curr, memory, *args, **kwargs):
        return attend(curr, memory.float(), *args, **kwargs)

    monkeypatch.setattr(ref.memory_attention, "forward", float_memory)
    out = []
    with torch.inference_mode():
        state = ref.init_state(video_path="unused")
        for t, obj, prompt in _prompts():
            ref.add_new_points_or_box(state, t, obj, points=prompt.get("points"),
                                      labels=prompt.get("labels"), box=prompt.get("box"))
        for reverse in (False, True):
            for t, ids, masks in ref.propagate_in_video(state, reverse=reverse):
                assert list(ids) == [1, 2]
                out.append((t, masks[:, 0].float().numpy()))
    return out


def test_two_objects_match_the_video_predictor(models, monkeypatch, one_thread):
    ours, ref = models
    frames = _clip()
    theirs = _reference_run(ref, ours, frames, monkeypatch)
    calls: list[int] = []

    def frame(i: int) -> np.ndarray:
        calls.append(i)
        return frames[i]

    prop = Sam2ObjectsPropagator(ours, frame=frame, num_frames=N_FRAMES)
    for t, obj, prompt in _prompts():
        assert isinstance(prop.add_prompt(t, obj, **prompt), PropagatedFrame)
    assert prop.origin == 1
    mine: list[FrameObjects] = []
    for reverse in (False, True):
        mine.extend(prop.propagate(reverse=reverse))
    assert [f.index for f in mine] == [t for t, _ in theirs] == [1, 2, 3, 4, 5, 6, 1, 0]
    for got, (t, expected) in zip(mine, theirs):
        assert sorted(got.objects) == [1, 2]
        for k, obj in enumerate((1, 2)):
            logits = got.objects[obj].logits
            np.testing.assert_allclose(logits, expected[k], atol=2e-3, rtol=1e-3,
                                       err_msg=f"frame {t} object {obj}")
            assert np.array_equal(logits > 0, expected[k] > 0)
    # features once per frame visited, for both objects (prompts on 1 and 3, then passes)
    assert calls == [1, 3, 1, 2, 3, 4, 5, 6, 1, 0]
    # each object its own logits on every frame (random weights judge object 2 absent
    # on some frames: -1024 everywhere, compared above all the same)
    for got in mine:
        assert np.abs(got.objects[1].logits - got.objects[2].logits).max() > 1e-2, got.index
    assert mine[0].objects[1].mask.sum() > 100
    assert 1 in mine[0].labels() and set(np.unique(mine[0].labels()).tolist()) <= {0, 1, 2}


def test_objects_do_not_share_memory(models, one_thread):
    """Object 1 (prompted on the passes' first frame) comes out exactly as when it is
    propagated alone: another object's memory never reaches it."""
    ours, _ = models
    frames = _clip()
    t, obj, prompt = _prompts()[0]
    alone = Sam2VideoPropagator(ours, frame=lambda i: frames[i], num_frames=N_FRAMES)
    alone.add_prompt(t, **prompt)
    single = {f.index: f.logits for f in alone.propagate()}
    both = Sam2ObjectsPropagator(ours, frame=lambda i: frames[i], num_frames=N_FRAMES)
    for t2, obj2, prompt2 in _prompts():
        both.add_prompt(t2, obj2, **prompt2)
    for f in both.propagate():
        if f.index in single:
            np.testing.assert_array_equal(f.objects[1].logits, single[f.index])


def test_labels_take_the_most_confident_present_object():
    a = np.array([[2.0, -1.0], [0.5, 3.0]], np.float32)
    b = np.array([[1.0, 4.0], [0.7, -2.0]], np.float32)
    frame = FrameObjects(index=0, reverse=False, objects={
        3: PropagatedFrame(index=0, logits=a, object_score=1.0, reverse=False),
        5: PropagatedFrame(index=0, logits=b, object_score=1.0, reverse=False)})
    assert frame.labels().tolist() == [[3, 5], [5, 3]]
    absent = FrameObjects(index=0, reverse=False, objects={
        3: PropagatedFrame(index=0, logits=a, object_score=1.0, reverse=False),
        5: PropagatedFrame(index=0, logits=b, object_score=-1.0, reverse=False)})
    assert absent.labels().tolist() == [[3, 0], [3, 3]]


def _tiny_config_model():
    from sam_model.sam2_configs import tiny_sam2_test_config
    from sam_model.sam2_model import build_sam2_from_config

    torch.manual_seed(0)
    return perturb_(build_sam2_from_config(tiny_sam2_test_config()), seed=2, scale=0.05)


def test_prompting_rules():
    prop = Sam2ObjectsPropagator(_tiny_config_model(), frame=lambda i: np.zeros((32, 32, 3), np.uint8),
                                 num_frames=4)
    with pytest.raises(RuntimeError, match="prompt an object"):
        next(prop.propagate())
    prop.add_prompt(2, 7, points=[[16, 16]], labels=[1])
    with pytest.raises(ValueError, match="already"):
        prop.add_prompt(1, 7, points=[[16, 16]], labels=[1])
    assert [f.index for f in prop.propagate(reverse=True)] == [2, 1, 0]
    with pytest.raises(RuntimeError, match="before propagating"):
        prop.add_prompt(0, 8, points=[[16, 16]], labels=[1])


def test_memory_banks_stay_bounded_over_40_frames(one_thread):
    """Each object's bank holds at most 2 x 15 frames' results, and the bytes held stop
    growing once the bank is full: a bank that kept every frame fails here."""
    model = _tiny_config_model()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    n = 40
    prop = Sam2ObjectsPropagator(model, frame=lambda i: frames[i % 4], num_frames=n)
    prop.add_prompt(2, 1, points=[[20, 20]], labels=[1])
    prop.add_prompt(6, 2, box=[30, 10, 60, 40])
    keep = prop.objects[1].keep
    assert keep == 15
    counts, sizes = [], []
    for out in prop.propagate():
        counts.append(prop.stored_frames)
        sizes.append(prop.stored_bytes)
        assert sorted(out.objects) == [1, 2]
    assert len(counts) == n - 2
    # object 1 (prompted on the passes' first frame): itself, the 14 frames after it and
    # the 15 the next frame reads; object 2 also keeps the 15 frames after frame 2 (the
    # backward pass re-tracks it on frame 2 and reads them)
    assert max(c[1] for c in counts) == 2 * keep
    assert max(c[2] for c in counts) <= 2 * keep + 1
    assert counts[-1] == {1: 2 * keep, 2: 2 * keep + 1}
    full = sizes.index(max(sizes))
    assert full < n - 8 and set(sizes[full:]) == {max(sizes)}  # flat once full
    assert prop.stored_frames == {1: keep, 2: keep + 1}  # the pass's far tail is dropped
    assert sorted(prop.objects[1].tracker.tracked) == list(range(3, 2 + keep))
    back = [dict(prop.stored_frames) for _ in prop.propagate(reverse=True)]
    assert [f[1] for f in back] == [keep, keep + 1, keep + 2]
    # one memory position encoding held for all of an object's frames
    held = prop.objects[1].tracker.tracked.values()
    assert len({id(r.memory_pos) for r in held}) == 1
