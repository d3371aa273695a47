"""Which prompt extent needs the zoom-out: box mIoU by box side at zoom 1, 2 and 4.

Validation scenes are held-out seeds 100..129 (the reported evaluation uses
0..59), up to 10 objects each. For every object the tight box is decoded on
the image at full scale and downscaled by 2 and 4 (masks upscaled back); the
table shows where each zoom wins, which sets ``sam_model.prompt_extent_limit``.
With ``--clicks``: the centre click instead, decoded at zoom 1, 2 and 4, and
the top-scored point mIoU of ways to choose among the candidates, which set
``sam_model.prefer_zoomed_click`` (fourth sitting).

    python -m benchmarks.zoom_limit_sam_tiny [--clicks] [--checkpoint PATH] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

BINS = (0, 64, 96, 128, 192, 256, 384, 100000)
ZOOMS = (1, 2, 4)


def _validation_scenes(first: int, count: int):
    from sam_model.train.evaluate import EVAL_SEED_KEY
    from sam_model.train.scenes import make_scene

    for i in range(first, first + count):
        scene = make_scene(np.random.default_rng([EVAL_SEED_KEY, i]), 1024)
        masks = [scene.mask(j) for j in range(len(scene.objects))]
        masks = [m for m in masks if m.sum() >= 64][:10]
        if masks:
            yield scene.image, masks


def box_iou_by_side(model, first: int = 100, count: int = 30) -> dict[str, dict[str, float]]:
    from sam_model.train.evaluate import _box, _iou, _longest_side, _Prompter

    scores: dict[tuple[int, int], list[float]] = {}
    with torch.no_grad():
        for image, masks in _validation_scenes(first, count):
            prompter = _Prompter(model, image)
            side = [_longest_side(m) for m in masks]
            boxes = np.array([_box(m) for m in masks], np.float32)
            for k in ZOOMS:
                pred = prompter.decode_boxes_at(boxes, k)
                for s, p, m in zip(side, pred, masks):
                    b = int(np.digitize(s, BINS)) - 1
                    scores.setdefault((b, k), []).append(_iou(p, m))
    out = {}
    for b in range(len(BINS) - 1):
        name = f"{BINS[b]}-{BINS[b + 1]}" if BINS[b + 1] < BINS[-1] else f">={BINS[b]}"
        if (b, 1) in scores:
            out[name] = {"objects": len(scores[(b, 1)]),
                         **{f"x{k}": round(float(np.mean(scores[(b, k)])), 3) for k in ZOOMS}}
    return out


def click_policies(model, limit: int = 192, first: int = 100,
                   count: int = 30) -> dict[str, float]:
    """Point mIoU of the centre click when its candidates come from zoom 1 only, 2
    only, 4 only, the best predicted IoU of all nine, the shipped rule (zoom 2
    replaces zoom 1 when ``prefer_zoomed_click``), and the oracle of all nine."""
    from sam_model.train.evaluate import _iou, _longest_side, _Prompter, object_centre
    from sam_model.zoom import prefer_zoomed_click

    rows = {k: [] for k in ("x1", "x2", "x4", "best_score_of_9", "rule", "oracle_of_9")}
    with torch.no_grad():
        for image, masks in _validation_scenes(first, count):
            prompter = _Prompter(model, image)
            pts = np.array([object_centre(m) for m in masks], np.float32)[:, None]
            labs = np.ones((len(masks), 1), np.int64)
            out = {k: prompter.decode(pts, labs, None, None, True, k=k)[:2] for k in ZOOMS}
            for o, gt in enumerate(masks):
                cand = [(float(out[k][1][o, j]), _iou(out[k][0][o, j], gt), k, j)
                        for k in ZOOMS for j in range(out[k][0].shape[1])]
                top = {k: max(c for c in cand if c[2] == k) for k in ZOOMS}
                for k in ZOOMS:
                    rows[f"x{k}"].append(top[k][1])
                rows["best_score_of_9"].append(max(cand)[1])
                rows["oracle_of_9"].append(max(c[1] for c in cand))
                side = _longest_side(out[2][0][o, top[2][3]])
                rows["rule"].append(top[2][1] if prefer_zoomed_click(
                    top[1][0], top[2][0], side, limit) else top[1][1])
    return {"objects": len(rows["x1"]),
            **{k: round(float(np.mean(v)), 3) for k, v in rows.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="sam_tiny weights (default: shipped)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clicks", action="store_true",
                        help="score ways to choose a click's zoom instead of boxes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sam_model.sam_tiny import build_sam_tiny

    model = build_sam_tiny(checkpoint=args.checkpoint).eval()
    table = click_policies(model) if args.clicks else box_iou_by_side(model)
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
