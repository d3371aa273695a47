"""Train sam_tiny or sam_lite0 on generated scenes: ``python -m sam_model.train``.

Needs only torch, numpy, scipy and scikit-image, so it runs on a bare GPU
machine with the repository on ``PYTHONPATH``. Resumes from ``OUT/last.pt``;
``--export`` writes the float16 weights file, ``--eval-scenes N`` scores the
result on held-out generated scenes (see :mod:`.evaluate`).

Example (the command recorded in ``sam_model/weights/MODEL_CARD.md``)::

    python -m sam_model.train --out runs/sam_tiny --time-budget-minutes 16 --workers 14 \\
        --max-minutes 8.5 --export runs/sam_tiny/sam_tiny.pt --eval-scenes 100
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

from .data import BatchPlan
from .loop import TrainConfig, export_weights, train
from .losses import LossWeights

BUILDERS = {
    "sam_tiny": "sam_model.sam_tiny:build_sam_tiny",
    "sam_lite0": "sam_model.sam_lite0:build_sam_lite0",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sam_model.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="run folder (checkpoint last.pt, log.jsonl)")
    p.add_argument("--model", default="sam_tiny", choices=tuple(BUILDERS),
                   help="sam_tiny (from scratch) or sam_lite0 (ImageNet trunk, frozen with "
                        "--freeze-trunk)")
    p.add_argument("--init-decoder", default=None,
                   help="start the prompt encoder and mask decoder from this weights file of "
                        "a model of the same width (e.g. sam_model/weights/sam_tiny.pt)")
    p.add_argument("--freeze-trunk", action="store_true",
                   help="keep sam_lite0's pretrained trunk frozen (run without gradients)")
    p.add_argument("--reuse", type=int, default=1,
                   help="steps per generated batch, each on its share of the objects (the "
                        "frozen trunk runs once per batch)")
    p.add_argument("--grad-rounds", type=int, default=0,
                   help="back-propagate through this many interaction rounds only (0: all)")
    p.add_argument("--min-lr-ratio", type=float, default=0.05,
                   help="the learning rate at the end of the schedule, relative to --lr")
    p.add_argument("--dead-leaves-prob", type=float, default=0.0,
                   help="share of dead-leaves scenes (occlusion, texture-only objects)")
    p.add_argument("--randconv-prob", type=float, default=0.0,
                   help="share of crops given a random-convolution texture change")
    p.add_argument("--photos", default=None,
                   help="photographic textures for dead-leaves scenes: a folder of images, "
                        "or 'skimage' (scikit-image's photographs less the evaluated ones)")
    p.add_argument("--photo-prob", type=float, default=0.0,
                   help="share of dead-leaves backgrounds and leaves filled with a patch of "
                        "a photo (needs --photos)")
    p.add_argument("--photo-regions-prob", type=float, default=0.0,
                   help="share of scenes that are a window of a photo whose objects are its "
                        "regions by a graph segmentation (pseudo-labels; needs --photos)")
    p.add_argument("--large-prob", type=float, default=0.0,
                   help="share of scenes of large objects (a third to most of the frame)")
    p.add_argument("--small-prob", type=float, default=0.0,
                   help="share of the scenes not large that are dead-leaves scenes of many "
                        "small leaves (6-60 px in a 1024 frame), half with soft edges")
    p.add_argument("--parts-prob", type=float, default=0.0,
                   help="share of the scenes not small that are regions made of many small "
                        "parts (glands of cells, land of fields; told apart by the parts)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--steps", type=int, default=100000, help="most steps to run")
    p.add_argument("--time-budget-minutes", type=float, default=None,
                   help="total training time of the run (all sittings); the learning-rate "
                        "schedule follows it")
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objects", type=int, default=16, help="target objects per crop")
    p.add_argument("--pixels-per-batch", type=int, default=24 * 384 * 384)
    p.add_argument("--crop-sizes", default="256,384,512")
    p.add_argument("--crop-weights", default=None,
                   help="how often each crop size is drawn (default: the plan's weights for "
                        "the default sizes, else equal)")
    p.add_argument("--window-prob", type=float, default=0.0,
                   help="share of crops drawn as windows of a larger image (big objects)")
    p.add_argument("--warmup", type=int, default=300, help="warm-up steps of the learning rate")
    p.add_argument("--init", default=None,
                   help="start a new run from these weights (a sam_tiny weights file) "
                        "instead of random ones; ignored when OUT/last.pt is resumed")
    p.add_argument("--init-grown", default=None,
                   help="start a new run from the weights of a smaller model: every key of "
                        "the file must fit this model, and this model's extra modules (e.g. "
                        "sam_lite0's zero-initialised colour input) keep their initial values")
    p.add_argument("--loss-size", type=int, default=None,
                   help="compute losses and simulated clicks with the ground truth reduced to "
                        "at most this side (much faster on a CPU for large crops)")
    p.add_argument("--encoder-lr-scale", type=float, default=1.0,
                   help="the image encoder's learning rate relative to --lr")
    p.add_argument("--trunk-lr-scale", type=float, default=1.0,
                   help="a pretrained trunk's learning rate relative to the encoder's "
                        "(e.g. 0.1: sam_lite0's trunk unfrozen at a low rate)")
    p.add_argument("--freeze-encoder", action="store_true", help="train the decoder only")
    p.add_argument("--trainable", default=None,
                   help="comma-separated parameter-name prefixes: train only those (e.g. "
                        "mask_decoder.iou_prediction_head. to fit the IoU head alone)")
    p.add_argument("--iou-weight", type=float, default=1.0,
                   help="weight of the IoU head's loss (MSE against the true IoU)")
    p.add_argument("--iou-rank-weight", type=float, default=0.0,
                   help="weight of the IoU head's ranking loss (cross-entropy of its "
                        "softmax against the candidate of highest true IoU; default 0: none)")
    p.add_argument("--bn-eval", action="store_true",
                   help="keep the encoder's BatchNorm on its running statistics (fine-tuning "
                        "on small batches)")
    p.add_argument("--point-first-prob", type=float, default=0.5,
                   help="share of steps whose first prompt is a point (else a box)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop (with a checkpoint) after this many minutes of training")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--export", default=None, help="write float16 weights here at the end")
    p.add_argument("--eval-scenes", type=int, default=0,
                   help="evaluate on this many held-out scenes at the end")
    p.add_argument("--eval-size", type=int, default=1024, help="side of the held-out scenes")
    p.add_argument("--eval-json", default=None, help="write the evaluation here as JSON")
    return p.parse_args(argv)


def _builder(name: str):
    """(name) -> build function taking checkpoint / pretrained keywords."""
    module, _, attr = BUILDERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _init_decoder(model, path: str) -> None:
    """Load the prompt encoder and mask decoder of ``model`` strictly from a weights file."""
    from sam_model.checkpoint import read_state_dict

    state = read_state_dict(path)
    for prefix in ("prompt_encoder.", "mask_decoder."):
        part = {k[len(prefix):]: v.float() if v.is_floating_point() else v
                for k, v in state.items() if k.startswith(prefix)}
        getattr(model, prefix[:-1]).load_state_dict(part, strict=True)


def _init_grown(model, path: str) -> list[str]:
    """Load a weights file into the matching keys of ``model``; returns the model's keys
    the file lacks. Every key of the file must exist in ``model`` with the same shape."""
    from sam_model.checkpoint import read_state_dict

    state = read_state_dict(path)
    own = model.state_dict()
    extra = sorted(k for k in state if k not in own)
    shapes = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    if extra or shapes:
        raise SystemExit(f"{path}: does not fit this model (keys it lacks: {extra[:3]}, "
                         f"other shapes: {shapes[:3]})")
    state = {k: v.to(own[k].dtype) for k, v in state.items()}
    missing = model.load_state_dict(state, strict=False).missing_keys
    return sorted(missing)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    build = _builder(args.model)

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)
    sizes = tuple(int(v) for v in args.crop_sizes.split(","))
    default_plan = BatchPlan()
    if args.crop_weights:
        weights = tuple(float(v) for v in args.crop_weights.split(","))
        if len(weights) != len(sizes):
            raise SystemExit("--crop-weights needs one weight per crop size")
    else:
        weights = (default_plan.crop_weights if sizes == default_plan.crop_sizes
                   else tuple(1.0 for _ in sizes))
    if (args.photo_prob > 0 or args.photo_regions_prob > 0) and not args.photos:
        raise SystemExit("--photo-prob and --photo-regions-prob need --photos (a folder of "
                         "images, or skimage)")
    if args.photos:  # fail now, not at the first batch, on a bad folder
        from .photo_textures import load_photos

        try:
            load_photos(args.photos)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--photos: {exc}") from exc
    resuming = (Path(args.out) / "last.pt").is_file()
    fresh = {"imagenet_trunk": True} if args.model == "sam_lite0" else {}
    if args.init and args.init_grown:
        raise SystemExit("give --init or --init-grown, not both")
    if args.init and not resuming:
        model = build(checkpoint=args.init).to(device)
        print(f"starting from the weights in {args.init}", flush=True)
    elif args.init_grown and not resuming:
        model = build(pretrained=False, **fresh)
        new = _init_grown(model, args.init_grown)
        model = model.to(device)
        print(f"starting from the weights in {args.init_grown}; new: "
              f"{', '.join(new) or 'none'}", flush=True)
    else:
        model = build(pretrained=False, **fresh).to(device)
        if args.init_decoder and not resuming:
            _init_decoder(model, args.init_decoder)
            print(f"prompt encoder and mask decoder from {args.init_decoder}", flush=True)
    config = TrainConfig(
        steps=args.steps, lr=args.lr, rounds=args.rounds, seed=args.seed, workers=args.workers,
        warmup=args.warmup, loss_size=args.loss_size, encoder_lr_scale=args.encoder_lr_scale,
        trunk_lr_scale=args.trunk_lr_scale,
        freeze_encoder=args.freeze_encoder, bn_eval=args.bn_eval,
        trainable=tuple(v for v in (args.trainable or "").split(",") if v),
        loss=LossWeights(iou=args.iou_weight, rank=args.iou_rank_weight),
        freeze_trunk=args.freeze_trunk, reuse=args.reuse, grad_rounds=args.grad_rounds,
        min_lr_ratio=args.min_lr_ratio,
        point_first_prob=args.point_first_prob,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every,
        time_budget_s=None if args.time_budget_minutes is None else args.time_budget_minutes * 60,
        plan=BatchPlan(objects=args.objects, pixels_per_batch=args.pixels_per_batch,
                       crop_sizes=sizes, crop_weights=weights,
                       window_prob=args.window_prob, dead_leaves_prob=args.dead_leaves_prob,
                       randconv_prob=args.randconv_prob, large_prob=args.large_prob,
                       photos=args.photos, photo_prob=args.photo_prob,
                       photo_regions_prob=args.photo_regions_prob,
                       small_prob=args.small_prob, parts_prob=args.parts_prob),
    )
    t0 = time.time()
    gen = train(model, config=config, run_dir=args.out, model_name=args.model,
                max_seconds=None if args.max_minutes is None else args.max_minutes * 60)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        print(f"[{time.time() - t0:7.1f}s] step {event.done}/{event.total} {event.message}",
              flush=True)
    print(f"stopped at step {result.step} (finished: {result.finished}); "
          f"training wall time so far {result.wall_s:.0f} s", flush=True)
    model.eval()
    if args.export:
        digest = export_weights(model, args.export)
        size = Path(args.export).stat().st_size
        print(f"exported {args.export}: {size / 1e6:.2f} MB sha256 {digest}", flush=True)
    if args.eval_scenes:
        from .evaluate import evaluate_scenes

        if args.export:  # score exactly what was exported (float16 weights)
            model = build(checkpoint=args.export).to(device)
        report = evaluate_scenes(model, count=args.eval_scenes, size=args.eval_size)
        print(json.dumps(report, indent=1), flush=True)
        if args.eval_json:
            Path(args.eval_json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
