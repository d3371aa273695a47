"""Embedding benchmark: peak memory and time for a 2048^2 and an 8192^2 raster.

    python benchmarks/bench_embed.py [--sizes 2048 8192] [--workdir DIR] [--json OUT]

For each size a synthetic 3-band uint8 GeoTIFF (tiled, 512-px blocks) is
written once, then a fresh Python process embeds it with ``embed_raster``
(sam_tiny, 1024-px tiles, the default overlap of 128 px) and reports:

- peak RSS (``ru_maxrss``) of that process, its RSS after loading the model,
  and the tracemalloc peak of Python-level allocations during the run;
- wall time, tiles, seconds per tile (time should be linear in tiles);
- a second run on the finished store: encoder calls (must be 0) and its time.

The model is the shipped ``sam_tiny`` when its weights are installed, else
the sam_tiny architecture with random weights (same cost), else the tiny test
config at 1024 px; the report says which. Expected: peak memory flat (under
2 GB, the larger raster within 1.3x of the smaller), time linear in tiles.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_raster(path: Path, size: int) -> None:
    """A size x size RGB GeoTIFF written strip by strip (never whole in memory)."""
    import numpy as np
    import rasterio
    from affine import Affine

    if path.exists():
        return
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True,
                   blockxsize=512, blockysize=512, crs="EPSG:32618",
                   transform=Affine(0.5, 0, 500000, 0, -0.5, 4200000))
    tmp = path.with_suffix(".part.tif")
    rng = np.random.default_rng(0)
    with rasterio.open(tmp, "w", **profile) as ds:
        for y0 in range(0, size, 512):
            h = min(512, size - y0)
            yy, xx = np.mgrid[y0:y0 + h, 0:size]
            base = (np.sin(yy / 37.0) * np.cos(xx / 53.0) * 60 + 120).astype(np.float32)
            strip = np.stack([base, base * 0.8 + 30, 200 - base * 0.5]) + rng.normal(
                0, 8, (3, h, size)).astype(np.float32)
            ds.write(np.clip(strip, 0, 255).astype(np.uint8),
                     window=((y0, y0 + h), (0, size)))
    os.replace(tmp, path)


def load_model():
    """(model, description): shipped sam_tiny, else its architecture at random, else tiny test."""
    import torch

    import sam_model

    try:
        return sam_model.build_sam("sam_tiny"), "sam_tiny (shipped weights)"
    except (sam_model.SamModelError, FileNotFoundError):
        pass
    try:
        torch.manual_seed(0)
        return (sam_model.build_sam("sam_tiny", pretrained=False),
                "sam_tiny architecture, random weights (shipped weights not installed yet)")
    except (KeyError, ValueError, ImportError):
        torch.manual_seed(0)
        cfg = sam_model.tiny_test_config(img_size=1024)
        return sam_model.build_sam_from_config(cfg), "tiny_test_config(img_size=1024)"


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def child(raster: Path, store: Path, batch_size: int) -> dict:
    """One measured run in this process: embed, then embed again on the finished store."""
    import tracemalloc

    import torch

    from napari_sam.core.progress import run
    from napari_sam.core.tiling.embed import embed_raster

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model, description = load_model()
    model.eval()
    calls = {"n": 0}
    model.image_encoder.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    rss_model = rss_mb()
    samples = []
    tracemalloc.start()
    t0 = time.perf_counter()
    store = run(embed_raster(raster, store, model, batch_size=batch_size, device="cpu"),
                lambda e: samples.append(rss_mb()))
    first = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    encoder_calls_first = calls["n"]
    calls["n"] = 0
    t0 = time.perf_counter()
    again = run(embed_raster(raster, store.path, model, batch_size=batch_size, device="cpu"))
    second = time.perf_counter() - t0
    c = again.counts()
    return {"model": description, "tiles": c["total"], "done": c["done"], "empty": c["empty"],
            "grid": list(store.grid.shape), "tile_size": store.grid.tile_size,
            "overlap": store.grid.overlap, "first_run_s": round(first, 2),
            "s_per_tile": round(first / max(1, c["total"]), 3),
            "encoder_calls_first": encoder_calls_first,
            "encoder_calls_second": calls["n"], "second_run_s": round(second, 2),
            "rss_after_model_mb": round(rss_model, 1), "rss_peak_mb": round(peak, 1),
            "rss_max_sampled_mb": round(max(samples), 1),
            "tracemalloc_peak_mb": round(py_peak / 2**20, 1),
            "store_mb": round(sum(f.stat().st_size for f in Path(store.path).rglob("*")
                                  if f.is_file()) / 2**20, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" /
                        "bench_embed.json", help="write the results here")
    parser.add_argument("--child", nargs=2, metavar=("RASTER", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child[0]), Path(args.child[1]), args.batch_size)))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_embed_"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    results = {}
    conditions = {"cpu_count": os.cpu_count(), "loadavg_at_start": os.getloadavg()[0],
                  "date": time.strftime("%Y-%m-%d %H:%M")}
    for size in args.sizes:
        raster = workdir / f"raster_{size}.tif"
        t0 = time.perf_counter()
        make_raster(raster, size)
        print(f"{size}^2 raster ready ({time.perf_counter() - t0:.1f} s): {raster}",
              file=sys.stderr)
        store = workdir / f"store_{size}.zarr"
        shutil.rmtree(store, ignore_errors=True)  # the first run starts from nothing
        out = subprocess.run([sys.executable, __file__, "--child", str(raster), str(store),
                              "--batch-size", str(args.batch_size)], env=env, check=True,
                             capture_output=True, text=True)
        results[size] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps({size: results[size]}), file=sys.stderr)
    print(f"model: {next(iter(results.values()))['model']}")
    print(f"{'raster':>8} {'tiles':>6} {'time s':>8} {'s/tile':>7} {'peak RSS MB':>12} "
          f"{'RSS model MB':>13} {'py peak MB':>11} {'2nd run s':>10} {'2nd enc calls':>14}")
    for size, r in results.items():
        print(f"{size:>7}^2 {r['tiles']:>6} {r['first_run_s']:>8} {r['s_per_tile']:>7} "
              f"{r['rss_peak_mb']:>12} {r['rss_after_model_mb']:>13} "
              f"{r['tracemalloc_peak_mb']:>11} {r['second_run_s']:>10} "
              f"{r['encoder_calls_second']:>14}")
    if len(results) >= 2:
        small, large = results[min(results)], results[max(results)]
        ratio = large["rss_peak_mb"] / small["rss_peak_mb"]
        per_tile = large["s_per_tile"] / small["s_per_tile"]
        print(f"peak RSS ratio {max(results)}^2 / {min(results)}^2: {ratio:.2f} "
              f"(target <= 1.3, both < 2048 MB)")
        print(f"time per tile ratio: {per_tile:.2f} (1.0 = linear in tiles)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"conditions": conditions, "results": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
