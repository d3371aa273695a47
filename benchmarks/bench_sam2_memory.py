"""Memory of a long SAM 2.1 propagation: flat, because the memory bank is bounded.

hiera_tiny with random weights (perturbed, object-score head biased so the
objects stay present: random weights would judge them absent and track
nothing), ``--objects`` objects clicked on frame 0 of a ``--frames``-frame
sequence of ``--size`` px frames made one at a time when the driver asks
(so the sequence itself takes no memory), propagated forward by
``sam_model.sam2_objects.Sam2ObjectsPropagator`` (what napari and the CLI
run). After frames 10, 50 and 100 (and the last) it records:

* the bytes of the tensors the memory banks hold and their frame count
  (exact; the reference video predictor keeps every frame's);
* the process's resident memory now (``VmRSS``) and its peak so far
  (``VmHWM``) from ``/proc/self/status``;
* Python's allocations (``tracemalloc`` current and peak: numpy arrays are
  traced, torch's own CPU buffers are not, hence RSS as well);
* the RSS again after ``malloc_trim(0)`` (glibc): freed memory the allocator
  kept is returned, so this is the memory in use (taken after the others).

    python -m benchmarks.bench_sam2_memory                          # 100 frames, 512 px
    python -m benchmarks.bench_sam2_memory --size 1024 --frames 100

Results go to ``benchmarks/results/sam2_memory.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_sam2 import load_average, machine, write_report

HERE = Path(__file__).resolve().parent
CHECKPOINTS = (10, 50, 100)


def _proc_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _model(size: int):
    import sam_model

    torch.manual_seed(0)
    model = sam_model.build_sam("sam2.1_hiera_tiny", pretrained=False, img_size=size).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.dtype.is_floating_point:
                value.add_(torch.randn(value.shape, generator=gen) * 0.02)
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(30.0)
    return model


def _frame(size: int, n: int):
    """Frame ``t`` of a sequence of ``n``: squares moving over noise, made on demand."""
    side = size // 8

    def frame(t: int) -> np.ndarray:
        rng = np.random.default_rng(t)
        img = rng.normal(90, 25, (size, size, 3))
        shift = t * size // (3 * n)
        img[size // 6 + shift:size // 6 + shift + side, size // 6:size // 6 + side] += 110
        img[size // 2:size // 2 + side, size // 2 + shift:size // 2 + shift + side] -= 70
        return np.clip(img, 0, 255).astype(np.uint8)

    return frame


def _trimmed_rss_mib() -> float | None:
    """RSS after glibc's ``malloc_trim(0)`` hands freed heap pages back to the system
    (None without glibc): what is left is memory in use, not the allocator's free lists."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    kib = _proc_kib("VmRSS")
    return None if kib is None else round(kib / 1024, 1)


def _sample(frame_no: int, prop, start: float) -> dict:
    current, peak = tracemalloc.get_traced_memory()
    sample = {"frame": frame_no, "seconds": round(time.perf_counter() - start, 1),
              "bank_bytes": prop.stored_bytes, "bank_frames": prop.stored_frames,
              "rss_mib": round((_proc_kib("VmRSS") or 0) / 1024, 1),
              "peak_rss_mib": round((_proc_kib("VmHWM") or 0) / 1024, 1),
              "tracemalloc_mib": round(current / 2**20, 2),
              "tracemalloc_peak_mib": round(peak / 2**20, 2)}
    sample["rss_after_malloc_trim_mib"] = _trimmed_rss_mib()
    return sample


def main(argv: list[str] | None = None) -> int:
    from sam_model.sam2_objects import Sam2ObjectsPropagator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=512, help="frame and model input size")
    parser.add_argument("--objects", type=int, default=2, choices=(1, 2))
    parser.add_argument("--out", default=str(HERE / "results" / "sam2_memory.json"))
    args = parser.parse_args(argv)
    load = load_average()
    model = _model(args.size)
    s = args.size
    frame = _frame(s, args.frames)
    prop = Sam2ObjectsPropagator(model, frame=frame, num_frames=args.frames)
    clicks = [[s // 6 + s // 16, s // 6 + s // 16], [s // 2 + s // 16, s // 2 + s // 16]]
    tracemalloc.start()
    start = time.perf_counter()
    for obj in range(args.objects):
        prop.add_prompt(0, obj + 1, points=[clicks[obj]], labels=[1])
    samples = []
    pixels = []
    for out in prop.propagate():
        done = out.index + 1
        pixels.append({k: int(o.mask.sum()) for k, o in out.objects.items()})
        if done in CHECKPOINTS or done == args.frames:
            samples.append(_sample(done, prop, start))
            print(json.dumps(samples[-1]), flush=True)
    tracemalloc.stop()
    first, last = samples[0], samples[-1]
    report = {
        "machine": machine(load),
        "model": "sam2.1_hiera_tiny (random weights)", "frames": args.frames, "size": s,
        "objects": args.objects, "samples": samples,
        "rss_growth_mib_after_frame_10": round(last["rss_mib"] - first["rss_mib"], 1),
        "bank_bytes_growth_after_frame_50": (last["bank_bytes"] - samples[1]["bank_bytes"]
                                             if len(samples) > 2 else None),
        "object_pixels_last_frame": pixels[-1],
    }
    print(f"{args.frames} frames at {s} px, {args.objects} object(s): bank "
          f"{first['bank_bytes'] / 2**20:.1f} -> {last['bank_bytes'] / 2**20:.1f} MiB, RSS "
          f"{first['rss_mib']} -> {last['rss_mib']} MiB (peak {last['peak_rss_mib']}), "
          f"{last['seconds']} s; load average {load}")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
