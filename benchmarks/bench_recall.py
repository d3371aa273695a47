"""Automatic segmentation on a generated mosaic: recall, decoder calls and wall time per mode.

The mosaic (:func:`make_mosaic`): ``size`` x ``size`` RGB, a smooth textured
background and non-overlapping objects (ellipses and rectangles of their own
colour and texture) from 10 px to 1500 px across, sizes log-uniform, the
large ones placed first; objects longer than a third of the mosaic are
elongated (their width 0.2-0.4 of their length). Truth labels come with it.

Modes (each run on the same model, ``--model``/``--checkpoint``, default the
embedded default model, with that model's thresholds):

* ``full``: the paper's full 32 x 32 grid per tile, one scale, 64 points per
  decoder call (the behaviour before this benchmark's changes);
* ``coarse``: coarse-to-fine points, one scale;
* ``default``: what ``napari-sam segment`` does with no flag;
* ``refine``: the default with ``--refine coarse`` (the coarse scales' masks refined
  once, mask to mask); its decoder calls count the refinements.

Reported per mode: recall of true objects (best IoU >= 0.7 with one output
object) overall, for objects larger than a tile and per size class; decoder
calls (points decoded); wall time (embedding included); split rate: of the
true objects crossing a tile seam and found (best IoU >= 0.5), those that
came out as more than one id covering >= 20% of them each; as controls, the
same rate for found objects no seam crosses (``split_rate_no_seam``: pieces
the model makes anyway) and for seam-crossing objects no longer than a tile
(``split_rate_seam_up_to_tile``: those a tile can hold whole). ``seam_cut_rate``:
of the same seam-crossing objects, those whose output id changes at a seam (the
id covering most of the object just before the seam differs from the one just
after it); as its control ``seam_cut_rate_mid_tile``, the same at lines halfway
between the seams (a larger mask painted over the edge of an object changes its
id there as often): the difference is what the tiling adds.

    python -m benchmarks.bench_recall --size 2048
    python -m benchmarks.bench_recall --size 4096 --modes full default

Results go to ``benchmarks/results/bench_recall_<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE_CLASSES = ((0, 32), (32, 128), (128, 512), (512, 100_000))
MODES = {
    "full": {"points": "full", "scales": (1,), "points_per_batch": 64},
    "coarse": {"points": "coarse", "scales": (1,)},
    "default": {},
    "refine": {"refine": "coarse"},
}


def make_mosaic(size: int, seed: int = 0, *, smallest: float = 10.0, largest: float = 1500.0,
                n_objects: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image (size, size, 3) uint8, truth (size, size) int32 ids 1..K)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = 70 + 25 * np.sin(6.0 * xx + 2.0) * np.cos(5.0 * yy)
    image = np.stack([base, base * 0.9 + 10, base * 0.8 + 5], -1)
    image += rng.normal(0, 6, image.shape)
    truth = np.zeros((size, size), np.int32)
    n_objects = n_objects or int(200 * (size / 2048) ** 2)
    largest = min(largest, 0.75 * size)
    sides = np.sort(np.exp(rng.uniform(np.log(smallest), np.log(largest), n_objects)))[::-1]
    k = 0
    for side in sides:
        for _ in range(30):
            h = side * rng.uniform(0.6, 1.0)
            # objects over a third of the mosaic are elongated (fields, rivers): under a
            # quarter of its area, as the default --max-area-fraction wants of objects
            w = side * rng.uniform(0.2, 0.4) if side > size / 3 else side * rng.uniform(0.6, 1.0)
            if rng.random() < 0.5:
                h, w = w, h
            cy, cx = rng.uniform(h / 2, size - h / 2), rng.uniform(w / 2, size - w / 2)
            y0, y1 = int(cy - h / 2) - 3, int(cy + h / 2) + 4
            x0, x1 = int(cx - w / 2) - 3, int(cx + w / 2) + 4
            y0, x0 = max(y0, 0), max(x0, 0)
            if truth[y0:y1, x0:x1].any():
                continue
            sub_y, sub_x = np.mgrid[y0:min(y1, size), x0:min(x1, size)]
            if rng.random() < 0.5:
                shape = ((sub_y - cy) / (h / 2)) ** 2 + ((sub_x - cx) / (w / 2)) ** 2 <= 1.0
            else:
                shape = (np.abs(sub_y - cy) <= h / 2) & (np.abs(sub_x - cx) <= w / 2)
            if shape.sum() < 0.5 * smallest ** 2:
                continue
            k += 1
            colour = rng.uniform(120, 250, 3) * rng.choice([1.0, 0.35])
            texture = rng.normal(0, 5, shape.shape + (3,))
            image[sub_y[shape], sub_x[shape]] = colour + texture[shape]
            truth[sub_y[shape], sub_x[shape]] = k
            break
    return np.clip(image, 0, 255).astype(np.uint8), truth


def write_geotiff(path: Path, image: np.ndarray) -> None:
    import rasterio
    from affine import Affine

    h, w = image.shape[:2]
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=3, dtype="uint8",
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                       crs="EPSG:32618",
                       transform=Affine(1.0, 0, 500000.0, 0, -1.0, 4500000.0)) as ds:
        ds.write(np.moveaxis(image, -1, 0))


def best_iou(truth: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per true id 1..K: the best IoU with one output id, and how many output ids
    cover >= 20% of it (its fragments)."""
    t = truth.ravel().astype(np.int64)
    p = labels.ravel().astype(np.int64)
    k, m = int(t.max()), int(p.max())
    t_area = np.bincount(t, minlength=k + 1)
    p_area = np.bincount(p, minlength=m + 1)
    both = (t > 0) & (p > 0)
    pairs = t[both] * (m + 1) + p[both]
    uniq, inter = np.unique(pairs, return_counts=True)
    ti, pi = uniq // (m + 1), uniq % (m + 1)
    iou = inter / (t_area[ti] + p_area[pi] - inter)
    best = np.zeros(k + 1)
    np.maximum.at(best, ti, iou)
    pieces = np.zeros(k + 1, np.int64)
    np.add.at(pieces, ti, (inter >= 0.2 * t_area[ti]).astype(np.int64))
    return best[1:], pieces[1:]


def score(truth: np.ndarray, labels: np.ndarray, tile: int) -> dict:
    best, pieces = best_iou(truth, labels)
    ids = np.arange(1, int(truth.max()) + 1)
    ys, xs = np.nonzero(truth)
    lab = truth[ys, xs]
    ext_y = np.zeros(len(ids) + 1)
    ext_x = np.zeros(len(ids) + 1)
    lo_y = np.full(len(ids) + 1, 1 << 30)
    lo_x = np.full(len(ids) + 1, 1 << 30)
    np.maximum.at(ext_y, lab, ys)
    np.maximum.at(ext_x, lab, xs)
    np.minimum.at(lo_y, lab, ys)
    np.minimum.at(lo_x, lab, xs)
    extent = np.maximum(ext_y - lo_y, ext_x - lo_x)[1:] + 1
    found = best >= 0.7
    out = {"objects": int(len(ids)), "recall": round(float(found.mean()), 3)}
    large = extent > tile
    out["larger_than_tile"] = int(large.sum())
    out["recall_larger_than_tile"] = round(float(found[large].mean()), 3) if large.any() else None
    for lo, hi in SIZE_CLASSES:
        sel = (extent >= lo) & (extent < hi)
        if sel.any():
            out[f"recall_{lo}_{hi}px"] = round(float(found[sel].mean()), 3)
            out[f"n_{lo}_{hi}px"] = int(sel.sum())
    stride = tile - tile // 8
    seams = np.arange(stride, truth.shape[0], stride)  # inner tile borders
    mid_lines = seams - stride // 2  # halfway between them: no tile border there

    def crossing(lines):
        out = np.zeros(len(ids), bool)
        for s in lines:
            out |= ((lo_y[1:] < s) & (ext_y[1:] >= s)) | ((lo_x[1:] < s) & (ext_x[1:] >= s))
        return out

    crosses = crossing(seams)
    seen = crosses & (best >= 0.5)
    out["seam_objects_found"] = int(seen.sum())
    out["split_rate"] = _rate(pieces[seen] > 1)
    # controls: the model's own fragmentation, seams or not (objects no seam crosses),
    # and the seam-crossing objects a single tile could hold whole
    out["split_rate_no_seam"] = _rate(pieces[~crosses & (best >= 0.5)] > 1)
    out["split_rate_seam_up_to_tile"] = _rate(pieces[seen & ~large] > 1)
    out["seam_cut_rate"] = _rate(seam_cut(truth, labels, ids[seen], seams, band=tile // 8))
    # control: the same measure at lines halfway between the seams, where masks that
    # overlap an object change its id just as often but no tile border lies
    mid_seen = crossing(mid_lines) & (best >= 0.5)
    out["seam_cut_rate_mid_tile"] = _rate(seam_cut(truth, labels, ids[mid_seen], mid_lines,
                                                   band=tile // 8))
    return out


def seam_cut(truth: np.ndarray, labels: np.ndarray, ids: np.ndarray, seams: np.ndarray,
             band: int) -> np.ndarray:
    """Per true id in ``ids``: whether a seam cuts it in the output, i.e. for some seam
    it crosses, the output id covering most of its pixels just before the seam (within
    ``band`` px) differs from the one covering most just after it, both ids non-zero
    and each covering at least 20% of its side. Pieces the model makes away from the
    seams do not count (``split_rate`` counts them)."""
    out = np.zeros(len(ids), bool)
    for n, i in enumerate(ids):
        ys, xs = np.nonzero(truth == i)
        for s in seams:
            for coord in (ys, xs):
                if not (coord.min() < s <= coord.max()):
                    continue
                before = (coord >= s - band) & (coord < s)
                after = (coord >= s) & (coord < s + band)
                tops = []
                for side in (before, after):
                    ids_side = labels[ys[side], xs[side]]
                    if ids_side.size == 0:
                        break
                    vals, counts = np.unique(ids_side, return_counts=True)
                    k = int(np.argmax(counts))
                    tops.append((int(vals[k]), counts[k] / ids_side.size))
                if len(tops) == 2 and tops[0][0] and tops[1][0] and tops[0][0] != tops[1][0] \
                        and min(tops[0][1], tops[1][1]) >= 0.2:
                    out[n] = True
    return out


def _rate(flags: np.ndarray) -> float:
    return round(float(flags.mean()), 3) if flags.size else 0.0


def run_mode(src: Path, truth: np.ndarray, model, mode: str, out: Path) -> dict:
    import rasterio

    from napari_sam.core import progress
    from napari_sam.core.automatic.run import config_for_model, segment_file

    config = config_for_model(model.model_name, dict(MODES[mode]))
    start = time.perf_counter()
    summary = progress.run(segment_file(src, out / mode, model, config=config))
    seconds = time.perf_counter() - start
    with rasterio.open(summary.outputs.labels) as ds:
        labels = ds.read(1)
    row = {"mode": mode, "seconds": round(seconds, 1), "tiles": summary.n_tiles,
           "grid_points": summary.n_points, "decoder_calls": summary.n_decoded,
           "found_objects": summary.n_objects}
    row.update(score(truth, labels, tile=1024))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tag", default="", help="suffix of the results file")
    parser.add_argument("--model", default=None,
                        help="a registered model (default: the embedded default model)")
    parser.add_argument("--checkpoint", default=None, help="weights file for --model")
    args = parser.parse_args(argv)
    import torch

    from napari_sam.core.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, args.checkpoint, device="cpu")
    image, truth = make_mosaic(args.size, args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"mosaic{args.size}.tif"
        write_geotiff(src, image)
        for mode in args.modes:
            row = run_mode(src, truth, model, mode, Path(tmp) / "out")
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = {"benchmark": "bench_recall", "size": args.size, "seed": args.seed,
              "machine": platform.platform(), "processor": platform.processor(),
              "threads": torch.get_num_threads(), "model": model.model_name,
              "checkpoint": Path(args.checkpoint).name if args.checkpoint else None,
              "runs": rows}
    out = HERE / "results" / f"bench_recall_{args.size}{('_' + args.tag) if args.tag else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
