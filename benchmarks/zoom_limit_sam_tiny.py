"""Which prompt extent needs the zoom-out: box mIoU by box side at zoom 1, 2 and 4.

Validation scenes are held-out seeds 100..129 (the reported evaluation uses
0..59), up to 10 objects each. For every object the tight box is decoded on
the image at full scale and downscaled by 2 and 4 (masks upscaled back); the
table shows where each zoom wins, which sets ``sam_model.prompt_extent_limit``.

    python -m benchmarks.zoom_limit_sam_tiny [--checkpoint PATH] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

BINS = (0, 64, 96, 128, 192, 256, 384, 100000)
ZOOMS = (1, 2, 4)


def box_iou_by_side(model, first: int = 100, count: int = 30) -> dict[str, dict[str, float]]:
    from sam_model.train.evaluate import EVAL_SEED_KEY, _box, _iou, _Prompter
    from sam_model.train.scenes import make_scene

    scores: dict[tuple[int, int], list[float]] = {}
    with torch.no_grad():
        for i in range(first, first + count):
            scene = make_scene(np.random.default_rng([EVAL_SEED_KEY, i]), 1024)
            masks = [scene.mask(j) for j in range(len(scene.objects))]
            masks = [m for m in masks if m.sum() >= 64][:10]
            if not masks:
                continue
            prompter = _Prompter(model, scene.image)
            side = [max(np.ptp(np.nonzero(m)[0]), np.ptp(np.nonzero(m)[1])) + 1 for m in masks]
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="sam_tiny weights (default: shipped)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sam_model.sam_tiny import build_sam_tiny

    model = build_sam_tiny(checkpoint=args.checkpoint).eval()
    table = box_iou_by_side(model)
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
