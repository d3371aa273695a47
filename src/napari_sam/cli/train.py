"""``napari-sam train DATA --out RUN``: fine-tune a model on labelled images.

DATA is a folder of image/label pairs (``images/`` + ``labels/``, or
``NAME.png`` + ``NAME_labels.png``) or a zarr store with arrays ``image``
(HxW, HxWxC or NxHxWxC) and ``labels`` (HxW or NxHxW integer ids, 0 =
background). ``--scenes`` trains on generated scenes instead (how the
embedded models were made). The image encoder is frozen unless
``--train-encoder``; then it learns at ``--encoder-lr-scale`` times the
learning rate and its BatchNorm layers keep their statistics (small
fine-tuning batches would replace them with noisy ones) unless
``--update-batchnorm``. ``--loss-size`` computes the losses and simulated
clicks at a reduced resolution, which makes large crops much cheaper on a
CPU. Training resumes from ``RUN/last.pt`` when it exists (``--overwrite``
starts over); the result is written to ``RUN/model.pt``, a state dict that
``--checkpoint RUN/model.pt --model NAME`` loads.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from napari_sam.cli.common import add_model_options, load_model_from_args
from napari_sam.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="fine-tune a model on image/label pairs (or train on generated scenes)",
        description=__doc__.split("\n\n", 1)[1].strip())
    parser.add_argument("data", nargs="?", default=None, metavar="DATA",
                        help="folder of image/label pairs, or a zarr store with image and labels")
    parser.add_argument("--scenes", action="store_true",
                        help="train on generated scenes instead of DATA")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder")
    add_model_options(parser)
    parser.add_argument("--from-scratch", action="store_true",
                        help="start from random weights (default: the model's weights)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--train-encoder", action="store_true",
                        help="train the image encoder too (default: frozen)")
    parser.add_argument("--encoder-lr-scale", type=float, default=0.3, metavar="F",
                        help="with --train-encoder: the encoder's learning rate is F times "
                             "--lr (default %(default)s)")
    parser.add_argument("--update-batchnorm", action="store_true",
                        help="with --train-encoder: let BatchNorm statistics follow the "
                             "training batches (default: kept)")
    parser.add_argument("--loss-size", type=int, default=None, metavar="PX",
                        help="compute losses and clicks on ground truth reduced to at most "
                             "PX per side (default: full crop resolution)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="simulated interaction rounds per object and step")
    parser.add_argument("--objects", type=int, default=8, help="target objects per crop")
    parser.add_argument("--crop", type=int, nargs="+", default=[256, 384], metavar="PX",
                        help="crop sides (multiples of 16) drawn for each batch; models "
                             "whose encoder needs whole frames (vit_*) use the full input")
    parser.add_argument("--crops-per-batch", type=int, default=4,
                        help="crops per batch at the largest crop side (more at smaller)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="data loader processes")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after this long (with a checkpoint; run again to resume)")
    parser.add_argument("--half", action="store_true", help="store RUN/model.pt as float16")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard an existing run in RUN and start over")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


# ------------------------------------------------------------ reading pairs

def _zarr_pairs(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        image, labels = np.asarray(group["image"]), np.asarray(group["labels"])
    except Exception as exc:
        raise InputError(f"{path}: not a zarr store with arrays 'image' and 'labels' ({exc})"
                         ) from exc
    if labels.ndim == 2:
        image, labels = image[None], labels[None]
    if labels.ndim != 3:
        raise InputError(f"{path}: 'labels' must be HxW or NxHxW, not {labels.shape}")
    if image.ndim == 3 and image.shape == labels.shape:
        image = image[..., None]  # N grey images
    if image.ndim == 4 and image.shape[1] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
        image = np.moveaxis(image, 1, -1)  # NxCxHxW -> NxHxWxC
    if image.ndim != 4 or image.shape[:3] != labels.shape:
        raise InputError(f"{path}: 'image' {image.shape} does not match 'labels' {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: 'labels' must hold integer ids, not {labels.dtype}")
    return [(image[i], labels[i]) for i in range(len(labels))]


def read_pairs(data: str | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, labels) pairs from a folder or a zarr store; InputError when unusable."""
    if data is None:
        raise InputError("give DATA (a folder or zarr store of image/label pairs) or --scenes")
    path = Path(data)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.suffix == ".zarr" or (path / "zarr.json").exists() or (path / ".zgroup").exists():
        pairs = _zarr_pairs(path)
    else:
        from sam_model.train.data import read_folder

        try:
            pairs = read_folder(path)
        except (ValueError, FileNotFoundError) as exc:
            raise InputError(str(exc)) from exc
    from sam_model.train.data import as_rgb_uint8

    out = []
    for i, (image, labels) in enumerate(pairs):
        try:
            out.append((as_rgb_uint8(np.asarray(image), name=f"{path} image {i}"),
                        np.asarray(labels)))
        except ValueError as exc:
            raise InputError(str(exc)) from exc
    if not any(np.any(lab > 0) for _, lab in out):
        raise InputError(f"{path}: the label images hold no objects (all 0)")
    return out


# ------------------------------------------------------------ the command

def _plan(args: argparse.Namespace, model):
    from sam_model.train.data import BatchPlan

    img_size = model.img_size
    crops = tuple(sorted(set(args.crop)))
    if not getattr(model.image_encoder, "accepts_crops", False):
        # ViT / TinyViT encoders have fixed-size position tables: whole frames only
        print(f"note: {type(model.image_encoder).__name__} takes only whole "
              f"{img_size}px inputs; training on full frames", file=sys.stderr)
        crops = (img_size,)
    if any(c % 16 or c < 32 or c > img_size for c in crops):
        raise InputError(f"--crop {args.crop}: crop sides must be multiples of 16 between 32 "
                         f"and the model's input size {img_size}")
    if args.crops_per_batch < 1 or args.objects < 1 or args.rounds < 1 or args.steps < 1:
        raise InputError("--steps, --rounds, --objects and --crops-per-batch must be positive")
    return BatchPlan(crop_sizes=crops, crop_weights=tuple(1.0 for _ in crops),
                     pixels_per_batch=args.crops_per_batch * max(crops) ** 2,
                     objects=args.objects, img_size=img_size)


def run(args: argparse.Namespace) -> int:
    import torch

    import sam_model
    from napari_sam.core.progress import run_with_bar
    from sam_model.train.loop import CHECKPOINT_NAME, TrainConfig, export_weights, train

    if args.scenes == (args.data is not None):
        raise InputError("give either DATA or --scenes")
    if args.loss_size is not None and args.loss_size < 16:
        raise InputError(f"--loss-size {args.loss_size}: give at least 16 pixels")
    if not args.encoder_lr_scale > 0:
        raise InputError(f"--encoder-lr-scale {args.encoder_lr_scale}: must be positive")
    pairs = None if args.scenes else read_pairs(args.data)
    model = load_model_from_args(args)
    name = model.model_name or args.model or sam_model.DEFAULT_MODEL
    if args.from_scratch:
        model = sam_model.build_sam(name, pretrained=False, device=model.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if args.overwrite and (out / CHECKPOINT_NAME).exists():
        shutil.rmtree(out)
    config = TrainConfig(
        steps=args.steps, lr=args.lr, warmup=max(1, min(300, args.steps // 10)),
        rounds=args.rounds, freeze_encoder=not args.train_encoder, seed=args.seed,
        encoder_lr_scale=args.encoder_lr_scale if args.train_encoder else 1.0,
        bn_eval=args.train_encoder and not args.update_batchnorm, loss_size=args.loss_size,
        checkpoint_every=max(10, min(500, args.steps // 5)), log_every=max(1, args.steps // 50),
        workers=args.workers, plan=_plan(args, model),
    )
    torch.manual_seed(args.seed)
    try:
        result = run_with_bar(
            train(model, config=config, run_dir=out, model_name=name, pairs=pairs,
                  max_seconds=None if args.max_minutes is None else args.max_minutes * 60),
            disable=True if args.quiet else None)
    except ValueError as exc:  # a run folder made with other settings, no objects in crops
        raise InputError(f"{out}: {exc}") from exc
    weights = out / "model.pt"
    digest = export_weights(model, weights, half=args.half)
    state = "finished" if result.finished else "stopped (run again to resume)"
    print(f"{state} at step {result.step}/{config.steps} after {result.wall_s:.0f} s; "
          f"weights: {weights} (sha256 {digest[:12]}); use --checkpoint {weights} --model {name}")
    return 0
