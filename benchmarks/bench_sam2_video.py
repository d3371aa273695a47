"""Our SAM 2.1 propagation against the reference ``SAM2VideoPredictor`` on the same weights.

hiera_tiny with the reference's random initialisation perturbed (as
``bench_sam2``), loaded strictly into ours; a generated clip of ``--frames``
square frames of ``--size`` px (a bright square moving over noise), one click
on frame 0, propagated forward by both in the same process, ours first then
the reference (after a 3-frame warm-up of both; ``--rounds`` pairs of runs,
ours then the reference in each, default one: a run is long). The reference is built as
``build_sam2_video_predictor`` does, with ``fill_hole_area=0`` (its hole
filling needs a CUDA extension); its frame loader is replaced by the frames
ours makes, so both time the same work: image encoder, memory attention,
heads and memory encoder on every frame. The object-score head's bias is set
to +30 in both (random weights would judge the object absent and give
-1024 everywhere, which compares nothing). Reported: seconds per run (medians over the rounds), the speedup
(median over rounds of the reference's time over ours in that round),
the largest logit difference and the smallest mask IoU over the frames, and
how many frames' results each holds at the end (ours is bounded, the
reference keeps every frame).

    python -m benchmarks.bench_sam2_video                       # 20 frames, 1024 px
    python -m benchmarks.bench_sam2_video --size 512 --frames 8 # a busy machine

Results go to ``benchmarks/results/sam2_video.json``; committed runs:
``sam2_video_1024x20.json`` and, from before the oneDNN products and the banded
Hiera, ``sam2_video_512x20.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.bench_sam2 import load_average, machine, perturbed_models, setup_paths, write_report

HERE = Path(__file__).resolve().parent
TARGET = 1.3


def _clip(n: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    side = size // 6
    frames = []
    for t in range(n):
        img = rng.normal(90, 25, (size, size, 3))
        y, x = size // 4 + t * size // (4 * n), size // 5 + t * size // (2 * n)
        img[y:y + side, x:x + side] += 110
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def _object_present(ref) -> None:
    # random weights judge the object absent on most frames (all logits -1024):
    # bias the object-score head so that masks are compared
    ref.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(30.0)


def _models(size: int):
    """(ours, the reference video predictor) at ``size`` px, same perturbed weights."""
    return perturbed_models(
        "sam2.1_hiera_tiny", img_size=size, adjust=_object_present,
        extra_overrides=("++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
                         "++model.binarize_mask_from_pts_for_mem_enc=true",
                         "++model.fill_hole_area=0"))


def run_ours(model, frames, click):
    from sam_model.sam2_video import Sam2VideoPropagator

    start = time.perf_counter()
    prop = Sam2VideoPropagator(model, frame=lambda i: frames[i], num_frames=len(frames))
    out = [prop.add_prompt(0, points=[click], labels=[1]).logits]
    out += [f.logits for f in prop.propagate()]
    return time.perf_counter() - start, out, prop.stored_frames


def run_reference(ref, ours, frames, click):
    import sam2.sam2_video_predictor as vp

    size = frames[0].shape[0]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    if size != ours.img_size:
        x = F.interpolate(x, size=(ours.img_size,) * 2, mode="bilinear", align_corners=False,
                          antialias=True)
    images = ours.normalize(x)
    vp.load_video_frames = lambda **_: (images, size, size)
    start = time.perf_counter()
    with torch.inference_mode():
        state = ref.init_state(video_path="generated")
        ref.add_new_points_or_box(state, 0, 1, points=[click], labels=[1])
        out = [m[0, 0].float().numpy() for _, _, m in ref.propagate_in_video(state)]
    seconds = time.perf_counter() - start
    held = len(state["output_dict_per_obj"][0]["cond_frame_outputs"]) + len(
        state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
    return seconds, out, held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024, help="frame and model input size")
    parser.add_argument("--rounds", type=int, default=1,
                        help="pairs of runs (ours, then the reference)")
    parser.add_argument("--out", default=str(HERE / "results" / "sam2_video.json"))
    args = parser.parse_args(argv)
    setup_paths()
    load = load_average()
    ours, ref = _models(args.size)
    frames = _clip(args.frames, args.size)
    s = args.size
    click = [s // 5 + s // 12, s // 4 + s // 12]
    print("warm-up (3 frames each) ...", flush=True)
    run_ours(ours, frames[:3], click)
    run_reference(ref, ours, frames[:3], click)
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    for r in range(max(1, args.rounds)):
        print(f"round {r + 1}: ours, {args.frames} frames at {s} px ...", flush=True)
        t, m_ours, held_ours = run_ours(ours, frames, click)
        times["ours"].append(t)
        print(f"round {r + 1}: reference ...", flush=True)
        t, m_ref, held_ref = run_reference(ref, ours, frames, click)
        times["reference"].append(t)
    t_ours, t_ref = (statistics.median(times[k]) for k in ("ours", "reference"))
    paired = statistics.median(b / a for a, b in zip(times["ours"], times["reference"]))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(m_ours, m_ref))
    ious = [float(((a > 0) & (b > 0)).sum() / ((a > 0) | (b > 0)).sum())
            if ((a > 0) | (b > 0)).any() else 1.0 for a, b in zip(m_ours, m_ref)]
    report = {
        "machine": machine(load),
        "frames": args.frames, "size": s, "ours_s": t_ours, "reference_s": t_ref,
        "speedup": paired, "ratio_of_medians": t_ref / t_ours, "all_s": times,
        "target_speedup": TARGET,
        "max_abs_logit_diff": diff, "min_mask_iou": min(ious),
        "frames_held_at_end": {"ours": held_ours, "reference": held_ref},
        "object_pixels_per_frame": [int((m > 0).sum()) for m in m_ours],
    }
    print(f"ours {t_ours:.1f} s, reference {t_ref:.1f} s, speedup {paired:.2f}x "
          f"(target {TARGET}x); max logit diff {diff:.2e}, min mask IoU {min(ious):.4f}; "
          f"frames held {held_ours} vs {held_ref}; load average {load}")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
