"""One short check of the accelerator path: embedding precision, then tiled segmentation.

For each model:

1. *embedding*: ``--tiles`` tiles of a generated mosaic at the model's input
   size are embedded in float32, then under autocast in float16 and
   bfloat16 (on a CPU: bfloat16 only, what CPU autocast supports); each
   reduced-precision embedding must be within a relative L2 error of the
   float32 one (:data:`TOLERANCE`). Reported: the errors, the largest
   absolute difference, tiles/s per precision.
2. *segmentation*: ``napari-sam segment``'s pipeline (default flags:
   coarse-to-fine points, scales 1, 2, 4) on a ``--size`` x ``--size``
   generated mosaic GeoTIFF. Reported: seconds, tiles, decoder calls,
   decoder calls/s, objects, and the peak memory: GPU memory allocated by
   torch on CUDA, resident memory of the process on a CPU.

    python -m benchmarks.gpu_check                      # CUDA when present, else CPU
    python -m benchmarks.gpu_check --device cpu --size 512 --points-per-side 8
    make gpu-check

Models: ``sam_tiny`` (the embedded default) and, on a GPU, ``vit_b`` (random
weights when its checkpoint is not in the cache: the timings and memory are
the architecture's; no download is attempted). Results go to
``benchmarks/results/gpu_check_<device>.json``; the exit status is 1 when a
precision is outside its tolerance.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOLERANCE = {"float16": 0.01, "bfloat16": 0.05}
"""Largest relative L2 error ``|e - e32| / |e32|`` of an autocast embedding."""


def pick(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def build(name: str, device: str):
    """The model on ``device`` and a note on its weights."""
    import sam_model
    from napari_sam.core.models import load_model

    if name == "sam_tiny":
        return load_model("sam_tiny", device=device), "embedded"
    try:
        model = sam_model.build_sam(name, device=device)
        note = "official checkpoint"
    except Exception:  # no checkpoint in the cache and no network: the architecture only
        model = sam_model.build_sam(name, device=device, pretrained=False)
        note = "random weights (no checkpoint available)"
    model.model_name = name
    return model.eval(), note


def embed_check(model, device: str, n_tiles: int) -> dict:
    """Embed ``n_tiles`` mosaic tiles in float32 and under autocast; errors against float32."""
    import torch

    from benchmarks.bench_recall import make_mosaic

    side = int(model.image_encoder.img_size)
    image, _ = make_mosaic(side * 2, seed=3)
    crops = [image[(i // 2) * side // 2:(i // 2) * side // 2 + side,
                   (i % 2) * side // 2:(i % 2) * side // 2 + side] for i in range(n_tiles)]
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().to(device)
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    wanted = ["float16", "bfloat16"] if device.startswith("cuda") else ["bfloat16"]
    saved = model.encoder_autocast
    out: dict = {"tiles": n_tiles, "tile_px": side, "tolerance": TOLERANCE}
    try:
        results = {}
        for name in ["float32", *wanted]:
            model.encoder_autocast = None if name == "float32" else dtypes[name]
            with torch.no_grad():
                model.encode_images(x[:1])  # warm-up (kernels, autotuning)
                _sync(device)
                start = time.perf_counter()
                emb = model.encode_images(x).float()
                _sync(device)
                seconds = time.perf_counter() - start
            results[name] = emb
            out[name] = {"tiles_per_s": round(n_tiles / seconds, 3)}
        ref = results["float32"]
        for name in wanted:
            diff = results[name] - ref
            rel = float(diff.norm() / ref.norm())
            out[name].update(relative_l2=round(rel, 5),
                             max_abs=round(float(diff.abs().max()), 5),
                             within_tolerance=rel <= TOLERANCE[name])
    finally:
        model.encoder_autocast = saved
    return out


def segment_check(model, device: str, size: int, points_per_side: int) -> dict:
    """Default-flag automatic segmentation of a generated ``size`` x ``size`` mosaic."""
    import torch

    from benchmarks.bench_recall import make_mosaic, write_geotiff
    from napari_sam.core import progress
    from napari_sam.core.automatic.run import config_for_model, segment_file

    image, truth = make_mosaic(size, seed=0)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "mosaic.tif"
        write_geotiff(src, image)
        config = config_for_model(getattr(model, "model_name", None),
                                  {"points_per_side": points_per_side})
        start = time.perf_counter()
        summary = progress.run(segment_file(src, Path(tmp) / "out", model, config=config))
        _sync(device)
        seconds = time.perf_counter() - start
    out = {"size": size, "points_per_side": points_per_side, "seconds": round(seconds, 2),
           "tiles": summary.n_tiles, "decoder_calls": summary.n_decoded,
           "decoder_calls_per_s": round((summary.n_decoded or 0) / seconds, 2),
           "objects": summary.n_objects, "true_objects": int(truth.max())}
    if device.startswith("cuda"):
        out["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cpu")
    parser.add_argument("--size", type=int, default=4096, help="mosaic side in px (4096)")
    parser.add_argument("--tiles", type=int, default=4, help="tiles embedded per precision (4)")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=None,
                        help="default: sam_tiny, plus vit_b on a GPU")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results)")
    args = parser.parse_args(argv)
    import torch

    device = pick(args.device)
    models = args.models or (["sam_tiny", "vit_b"] if device.startswith("cuda") else ["sam_tiny"])
    report: dict = {"benchmark": "gpu_check", "device": device, "machine": platform.platform(),
                    "processor": platform.processor(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "models": {}}
    if device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name(0)
    ok = True
    for name in models:
        model, note = build(name, device)
        row = {"weights": note, "embedding": embed_check(model, device, args.tiles)}
        row["segment"] = segment_check(model, device, args.size, args.points_per_side)
        ok &= all(v.get("within_tolerance", True) for v in row["embedding"].values()
                  if isinstance(v, dict) and "relative_l2" in v)
        report["models"][name] = row
        print(json.dumps({name: row}), flush=True)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    report["within_tolerance"] = ok
    out = Path(args.out) if args.out else HERE / "results" / f"gpu_check_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
