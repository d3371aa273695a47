"""Vectorisation speed: polygons per second on a labels raster with 100,000 objects.

The raster (3,800 x 3,800 px, uint32, EPSG:32618) holds ~100,000 objects on a
jittered grid: ellipses of random size and orientation, one in ten with a hole,
one in ten in two parts, so holes, multi-parts and seams between 2,048 px
windows all occur. Cases, each run once:

- ``array``: one in-memory window, ``polygons_from_labels`` (trace + group_parts);
- ``file``: ``vectorize_labels`` over the GeoTIFF in 2,048 px windows (objects
  on window seams are dissolved), attributes computed;
- ``big_ids``: the same raster with ids above 2**31 (per-window relabelling);
- ``gpkg``: writing the result as a GeoPackage.

    python -m benchmarks.bench_vectorize [--objects 100000]

Results go to ``benchmarks/results/bench_vectorize.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_labels(n_objects: int, cell: int = 12, seed: int = 0) -> np.ndarray:
    """(side*cell, side*cell) uint32 labels with about ``n_objects`` objects, ids 1..n."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_objects)))
    size = side * cell
    yy, xx = np.mgrid[:cell, :cell].astype(np.float32) - (cell - 1) / 2
    labels = np.zeros((size, size), np.uint32)
    ident = 0
    for row in range(side):
        block = np.zeros((cell, side * cell), np.uint32)
        for col in range(side):
            if ident >= n_objects:
                break
            ident += 1
            ry, rx = rng.uniform(2.0, cell / 2, 2)
            theta = rng.uniform(0, np.pi)
            dy, dx = rng.uniform(-1.0, 1.0, 2)
            c, s = np.cos(theta), np.sin(theta)
            u = ((xx - dx) * c + (yy - dy) * s) / rx
            v = (-(xx - dx) * s + (yy - dy) * c) / ry
            mask = u * u + v * v <= 1.0
            kind = ident % 10
            if kind == 3 and rx > 3.5 and ry > 3.5:
                mask &= u * u + v * v > 0.15  # a hole
            elif kind == 7:
                mask &= np.abs(u) > 0.25  # two parts
            tile = block[:, col * cell:(col + 1) * cell]
            tile[mask] = ident
        labels[row * cell:(row + 1) * cell] = block
    return labels


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)

    from affine import Affine

    from napari_sam.core.io.labels import write_labels
    from napari_sam.core.io.vectors import write_vectors
    from napari_sam.core.progress import run
    from napari_sam.core.vector.polygons import polygons_from_labels, vectorize_labels

    transform = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4500000.0)
    labels, t_make = _timed(lambda: make_labels(args.objects))
    n = int(len(np.unique(labels)) - 1)
    print(f"labels {labels.shape} with {n} objects made in {t_make:.1f} s", flush=True)
    results: dict = {"objects": n, "shape": list(labels.shape), "window": args.window,
                     "machine": platform.processor() or platform.machine(),
                     "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        tif = write_labels(Path(tmp) / "labels.tif", labels, transform=transform,
                           crs="EPSG:32618")
        big = write_labels(Path(tmp) / "big.tif", np.where(labels > 0, labels + 2**31, 0),
                           transform=transform, crs="EPSG:32618")

        polys, t_array = _timed(lambda: polygons_from_labels(labels, transform))
        assert len(polys) == n
        gdf, t_file = _timed(lambda: run(vectorize_labels(tif, window=args.window)))
        assert len(gdf) == n and gdf.is_valid.all()
        gdf_big, t_big = _timed(lambda: run(vectorize_labels(big, window=args.window)))
        assert len(gdf_big) == n
        _, t_gpkg = _timed(lambda: write_vectors(gdf, Path(tmp) / "objects.gpkg"))
        holes = int(sum(len(g.interiors) for g in gdf.geometry if g.geom_type == "Polygon"))
        multi = int((gdf.geom_type == "MultiPolygon").sum())
    for name, seconds in (("array", t_array), ("file", t_file), ("big_ids", t_big),
                          ("gpkg", t_gpkg)):
        results[name] = {"seconds": round(seconds, 2), "polygons_per_s": round(n / seconds)}
        print(f"{name:8s} {seconds:7.2f} s  {n / seconds:9.0f} polygons/s", flush=True)
    results["polygons_with_holes"] = holes
    results["multipolygons"] = multi
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out = HERE / "results" / f"bench_vectorize{args.tag}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{holes} with holes, {multi} multipart; peak RSS {results['peak_rss_mb']} MB -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
