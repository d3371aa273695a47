"""How large an object a model can segment from one prompt: a uniform square of side L.

The image is 1024 x 1024 (the model's input, no resize) of dark noise with one
flat yellow square of side L in the middle, so nothing but the object's size
is hard. Per L: IoU of the mask from a box around the square (single mask, as
``SamPredictor`` is used for boxes) and of the top-scored of three masks from
a click at its centre. A model with no size limit scores the same at every L;
``sam_tiny`` and ``sam_lite0`` fall off a cliff somewhere past 128-256 px
(see ``sam_model/weights/MODEL_CARD.md``). Also per L: how similar the image
embedding at the square's centre is to the one near its edge (inside) and
just beyond it (outside); when the two are alike, no prompt can make the
decoder paint the whole square.

    python -m benchmarks.size_sweep --model sam_lite0 [--checkpoint FILE.pt]

Results go to ``benchmarks/results/size_sweep_<model>.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIDES = (64, 128, 256, 384, 512, 768)


def square_scene(side: int, seed: int = 0, size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(image (size, size, 3) uint8, truth (size, size) bool): a flat square of ``side`` px."""
    rng = np.random.default_rng(seed)
    image = (40 + rng.normal(0, 5, (size, size, 3))).clip(0, 255).astype(np.uint8)
    truth = np.zeros((size, size), bool)
    y0 = (size - side) // 2
    truth[y0:y0 + side, y0:y0 + side] = True
    image[truth] = (200, 180, 60)
    return image, truth


def _iou(mask: np.ndarray, truth: np.ndarray) -> float:
    return float((mask & truth).sum() / max(1, (mask | truth).sum()))


def sweep(model, sides=SIDES) -> list[dict]:
    """One row per side: box IoU, click IoU (top-scored of three) and the masks' areas."""
    from sam_model import SamPredictor

    rows = []
    for side in sides:
        image, truth = square_scene(side)
        predictor = SamPredictor(model)
        predictor.set_image(image)
        ys, xs = np.nonzero(truth)
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=float)
        masks, _, _ = predictor.predict(box=box, multimask_output=False)
        centre = np.array([[(xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0]])
        clicks, scores, _ = predictor.predict(point_coords=centre, point_labels=np.array([1]),
                                              multimask_output=True)
        top = clicks[int(np.argmax(scores))]
        inner, outer = _similarities(predictor, side, image.shape[0])
        rows.append({"side": int(side), "box_iou": round(_iou(masks[0], truth), 3),
                     "click_iou": round(_iou(top, truth), 3),
                     "box_area": int(masks[0].sum()), "click_area": int(top.sum()),
                     "true_area": int(truth.sum()),
                     "embedding_similarity_inside": inner,
                     "embedding_similarity_outside": outer})
    return rows


def _similarities(predictor, side: int, size: int) -> tuple[float, float]:
    """Cosine similarity of the image embedding at the square's centre to the one at 0.9 of
    the way to its edge (inside) and to the one 3 cells beyond its edge (outside): a model
    that can paint the whole square must tell the two apart."""
    features = predictor.features[0].float()
    features = features / features.norm(dim=0, keepdim=True).clamp(min=1e-6)
    cells = features.shape[-1]
    c = cells // 2
    half = side * cells / size / 2.0
    centre = features[:, c, c]
    inside = features[:, c, min(cells - 1, c + int(round(0.9 * half)))]
    outside = features[:, c, min(cells - 1, c + int(round(half)) + 3)]
    return (round(float((centre * inside).sum()), 3), round(float((centre * outside).sum()), 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sam_lite0")
    parser.add_argument("--checkpoint", default=None, help="weights file (default: shipped)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import torch

    from sam_model import build_sam

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        model = build_sam(args.model, checkpoint=args.checkpoint)
    else:
        from napari_sam.core.models import load_model

        model = load_model(args.model, device="cpu")
    model.eval()
    rows = sweep(model)
    for row in rows:
        print(json.dumps(row), flush=True)
    out = Path(args.out) if args.out else HERE / "results" / f"size_sweep_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "size_sweep", "model": args.model,
                               "checkpoint": Path(args.checkpoint).name if args.checkpoint
                               else "shipped", "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
