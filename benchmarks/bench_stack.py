"""Stacks: click latency on an embedded plane, and peak memory of interactive use.

    python -m benchmarks.bench_stack [--planes 100] [--side 2048] [--visit 4]
                                     [--automatic 0] [--workdir DIR] [--json OUT]

Writes a (planes, side, side) uint16 OME-Zarr stack (one chunk per plane and
512-px block; smooth content, so it compresses), then, in this process, does
what the interactive widget does with it, through the same calls:

- opens it lazily (``core.io.nd``: the plane shown is cut from the zarr array);
- visits ``--visit`` planes spread through the stack; on each one clicks
  (first click: the plane's tile is embedded), clicks again on the same plane
  (the embedding is cached: this is the "scroll back and click" latency),
  and accepts the best candidate into a :class:`SparseStack` labels array of
  the stack's full shape;
- propagates the last object through 5 planes.

and reports the median and worst time of a click on an already-embedded
plane (wall and CPU time: on a shared, busy machine the CPU time is what the
click costs; the load average is reported) (target <= 0.3 s with sam_tiny on a CPU) and the peak RSS (target
< 2 GB for a 2048 x 2048 x 100 stack). ``--automatic N`` also runs the
CLI's per-plane automatic segmentation on the first N planes and reports
its peak RSS (memory must not grow with the number of planes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

PLANE_ENGINES = 32  # as the interactive widget: planes whose embeddings stay in memory


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_stack(path: Path, planes: int, side: int) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    array = group.create_array("0", shape=(planes, side, side), dtype="uint16",
                               chunks=(1, 512, 512), fill_value=0)
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    for z in range(planes):
        plane = 800 + 200 * np.sin(xx / 97 + z / 9) * np.cos(yy / 131)
        for k in range(12):  # bright blobs that drift through the stack
            cy, cx = (k * 613 + 7 * z) % side, (k * 389 + 5 * z) % side
            plane[(yy - cy) ** 2 + (xx - cx) ** 2 < (40 + 5 * (k % 4)) ** 2] = 3000
        array[z] = plane.astype(np.uint16)
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "z", "type": "space"}, {"name": "y", "type": "space"},
                 {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]}


def interactive(path: Path, model, visit: int) -> dict:
    from napari_sam.core.io.nd import level0_array, plane, stack_axes_of
    from napari_sam.core.io.sparse_stack import SparseStack
    from napari_sam.core.progress import run
    from napari_sam.core.prompt.predictor import RasterPredictor
    from napari_sam.core.prompt.propagate import propagate

    axes = stack_axes_of(path)
    array = level0_array(path)
    labels = SparseStack(axes.labels_shape)
    engines: OrderedDict = OrderedDict()

    def engine(index):  # as the widget: the last PLANE_ENGINES planes stay in memory
        if index not in engines:
            engines[index] = RasterPredictor(model=model, raster=plane(array, axes, index))
            while len(engines) > PLANE_ENGINES:
                engines.popitem(last=False)
        return engines[index]

    side = axes.plane_shape[0]
    first, again, again_cpu = [], [], []
    last = None
    for z in np.linspace(0, axes.stack_shape[0] - 1, visit).astype(int):
        index = (int(z),)
        cy, cx = (3 * 613 + 7 * z) % side, (3 * 389 + 5 * z) % side  # on a blob
        start = time.perf_counter()
        engine(index).predict(np.array([[cx, cy]]), coords="pixel")
        first.append(time.perf_counter() - start)
        start, cpu = time.perf_counter(), time.process_time()
        result = engine(index).predict(np.array([[cx + 3, cy + 2]]), coords="pixel")
        again.append(time.perf_counter() - start)
        again_cpu.append(time.process_time() - cpu)
        window, mask = result.cropped()
        rows, cols = np.nonzero(mask)
        labels[(np.full(rows.size, z), rows + window.y0, cols + window.x0)] = len(first)
        last = (index, (window, mask))
    found = run(propagate(engine, last[0], last[1], axis=0, size=axes.stack_shape[0]))
    return {"first_click_s": first, "click_on_embedded_plane_s": again,
            "median_click_on_embedded_plane_s": statistics.median(again),
            "worst_click_on_embedded_plane_s": max(again),
            "click_on_embedded_plane_cpu_s": again_cpu,
            "load_average_1min": os.getloadavg()[0],
            "propagated_planes": len(found), "labels_planes_allocated": len(labels.planes()),
            "peak_rss_mb_interactive": rss_mb()}


def automatic(path: Path, model, planes: int, out: Path) -> dict:
    from napari_sam.core.automatic.settings import SegmentConfig
    from napari_sam.core.automatic.stack import segment_planes
    from napari_sam.core.io.nd import level0_array, stack_axes_of
    from napari_sam.core.progress import run

    axes = stack_axes_of(path)
    array = level0_array(path)
    written = []
    start = time.perf_counter()
    run(segment_planes(array, axes, model, SegmentConfig(points_per_side=16, min_area=25),
                       write=lambda index, labels: written.append(int(labels.max())),
                       planes=[(z,) for z in range(planes)], join=True))
    return {"automatic_planes": planes, "automatic_s": time.perf_counter() - start,
            "peak_rss_mb_after_automatic": rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=100)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--visit", type=int, default=4)
    parser.add_argument("--automatic", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from napari_sam.core.models import load_model

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-stack-"))
    path = work / f"stack_{args.planes}x{args.side}.ome.zarr"
    if not path.exists():
        start = time.perf_counter()
        write_stack(path, args.planes, args.side)
        print(f"wrote {path} in {time.perf_counter() - start:.0f} s", flush=True)
    base = rss_mb()
    model = load_model("sam_tiny", None, device="cpu")
    report = {"planes": args.planes, "side": args.side, "rss_mb_before_model": base,
              "rss_mb_after_model": rss_mb()}
    report.update(interactive(path, model, args.visit))
    if args.automatic:
        report.update(automatic(path, model, args.automatic, work))
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
