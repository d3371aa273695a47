"""The training loop: simulated interactive sessions, checkpoints, resume, export.

One step takes a batch of crops (see :mod:`.data`), embeds them, and plays
``rounds`` rounds of interaction per target object, as in the SAM paper: the
first prompt is a random point inside the object (decoded with the three
multimask outputs, of which only the best gets the mask loss) or a noisy box;
each later round adds a click drawn from the error region of the previous
prediction and, usually, feeds that prediction's low-res logits back as the
mask prompt. The loss of every round (20:1 focal:dice, plus MSE of the
predicted IoU) is averaged.

Crops keep the inference geometry: a crop placed at ``offset`` in the 1024
input frame is embedded alone (the encoder is fully convolutional), the dense
positional encoding is sliced at the offset, prompts are shifted into the
frame, and the low-res masks are 4x the crop's embedding grid.

:func:`train` is a generator of progress events returning a
:class:`TrainResult`; it checkpoints every ``checkpoint_every`` steps and on
a time limit or SIGTERM, and resumes from ``run_dir/last.pt``. Batches and
click sampling depend only on ``(seed, step)``, so a resumed run equals an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import (
    _stop_on_sigterm,
    export_weights,  # noqa: F401  (re-exported: callers import it here)
    load_checkpoint_state,
    save_checkpoint,
)
from .data import BatchPlan, BatchStream, batch_loader, prepare_pairs
from .interact import error_clicks, noisy_boxes, random_points_in
from .losses import LossWeights, sam_loss

CHECKPOINT_NAME = "last.pt"
# Settings that may differ when a run is resumed: how long it runs, and bookkeeping.
EXTENDABLE = ("steps", "time_budget_s", "workers", "checkpoint_every", "log_every")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run (stored in its checkpoints).

    With ``time_budget_s`` the run ends after that much training time or
    ``steps`` steps, whichever comes first, and the learning-rate schedule
    follows whichever is further along (a run sized by the clock; not
    reproducible step for step). Without it everything depends on the step.

    CPU economies: ``freeze_trunk`` keeps a pretrained trunk (an encoder with
    ``trunk_features`` and ``neck``, e.g. sam_lite0's) frozen and runs it
    without gradients; ``reuse`` > 1 takes each batch for that many steps,
    each on its own share of the batch's objects, with the trunk's features
    computed once; ``grad_rounds`` > 0 back-propagates through that many
    rounds only (the first and randomly drawn later ones), the other rounds
    run without gradients and serve to simulate the interaction.
    ``trainable``: parameter-name prefixes; when given, only those parameters
    train (e.g. ``("mask_decoder.iou_prediction_head.",)`` to fit the IoU head
    of a trained model), the rest keep their values, running statistics
    included (the model runs in eval mode).
    ``encoder_lr_scale``: the image encoder's learning rate relative to the
    rest; ``trunk_lr_scale``: a pretrained trunk's (``image_encoder.trunk.``)
    relative to the encoder's (a trunk unfrozen at a low rate under a neck
    that trains at full rate).
    """

    steps: int = 20000
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 300
    min_lr_ratio: float = 0.05
    rounds: int = 8
    point_first_prob: float = 0.5
    mask_input_prob: float = 0.8
    grad_clip: float = 1.0
    freeze_encoder: bool = False
    freeze_trunk: bool = False
    reuse: int = 1
    grad_rounds: int = 0
    encoder_lr_scale: float = 1.0
    trunk_lr_scale: float = 1.0
    bn_eval: bool = False
    loss_size: int | None = None
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    amp: bool = True
    workers: int = 0
    time_budget_s: float | None = None
    trainable: tuple[str, ...] = ()
    plan: BatchPlan = field(default_factory=BatchPlan)
    loss: LossWeights = field(default_factory=LossWeights)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        plan = BatchPlan(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in d.pop("plan").items()})
        loss = LossWeights(**d.pop("loss"))
        d["trainable"] = tuple(d.get("trainable", ()))
        return cls(plan=plan, loss=loss, **d)


@dataclass(frozen=True)
class TrainEvent:
    """Progress of a run (same fields as ``napari_sam.core.progress.Progress``)."""

    stage: str
    done: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class TrainResult:
    """What a call of :func:`train` did."""

    step: int
    finished: bool
    wall_s: float
    checkpoint: Path
    history: list = field(default_factory=list)


# ------------------------------------------------------------ one step

def _normalise(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """BxSxSx3 uint8 -> Bx3xSxS normalised float."""
    x = images.permute(0, 3, 1, 2).float()
    return (x - model.pixel_mean) / model.pixel_std


def interactive_loss(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    *,
    rounds: int,
    generator: torch.Generator,
    point_first: bool,
    use_mask_input: bool,
    freeze_encoder: bool = False,
    weights: LossWeights | None = None,
    loss_size: int | None = None,
    embedding: torch.Tensor | None = None,
    train_rounds: Sequence[int] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean loss over ``rounds`` simulated rounds for every object of ``batch``.

    With ``loss_size`` the ground truth of crops larger than that is
    reduced by an integer factor (a pixel is in the object when most of its
    block is), and the losses, true IoUs and simulated clicks are computed
    at that resolution; clicks and boxes are mapped back to crop pixels
    (block centres). On a CPU this part, not the network, dominated a step
    on 1024-px crops (20 s, of which about 5 s were the model).

    ``embedding``: the crops' image embedding Bx``C``xhxw, when the caller
    computed it (otherwise the encoder runs here). ``train_rounds``: the
    rounds whose loss is back-propagated (None: all); the others run under
    ``no_grad``. Round 0 should be among them (its statistics are reported).

    Returns the loss (with gradient) averaged over the trained rounds and
    statistics: the true IoU of the first and last rounds' chosen masks and
    the loss parts of round 0.
    """
    weights = weights or LossWeights()
    device = model.pixel_mean.device
    images = batch["image"].to(device, non_blocking=True)
    gt = batch["masks"].to(device, non_blocking=True).flatten(0, 1)
    valid = batch["valid"].to(device, non_blocking=True).flatten()
    k = batch["masks"].shape[1]
    oy, ox = (int(v) for v in batch["offset"])
    gt, valid, factor = reduce_targets(gt, valid, loss_size)
    if embedding is not None:
        emb = embedding
    elif freeze_encoder:
        with torch.no_grad():
            emb = model.image_encoder(_normalise(model, images))
    else:
        emb = model.image_encoder(_normalise(model, images))
    emb = emb.repeat_interleave(k, 0)
    h, w = emb.shape[-2:]
    pe = model.prompt_encoder.get_dense_pe()[..., oy // 16: oy // 16 + h, ox // 16: ox // 16 + w]
    shift = torch.tensor([ox, oy], device=device, dtype=torch.float32)
    scale = float(factor)
    centre = (factor - 1) / 2.0  # a reduced pixel's centre in crop pixels
    n = gt.shape[0]
    rows = torch.arange(n, device=device)
    pts = torch.zeros(n, 0, 2, device=device)
    labs = torch.zeros(n, 0, dtype=torch.long, device=device)
    box = None
    if point_first:
        p, _ = random_points_in(gt, generator)
        pts, labs = p[:, None] * scale + centre, torch.ones(n, 1, dtype=torch.long, device=device)
    else:
        box = noisy_boxes(gt, generator)
        if factor > 1:  # the far edges of the reduced pixels
            box = box * scale + torch.tensor([0.0, 0.0, factor - 1.0, factor - 1.0],
                                             device=device)
    total = torch.zeros((), device=device)
    trained = 0
    stats: dict[str, torch.Tensor] = {}
    prev_low = pred = None
    for r in range(rounds):
        grad = train_rounds is None or r in train_rounds
        if r > 0:
            p, lab = error_clicks(pred, gt, generator)
            pts = torch.cat([pts, p[:, None] * scale + centre], 1)
            labs = torch.cat([labs, lab[:, None]], 1)
        points = (pts + shift, labs) if pts.shape[1] else None
        boxes = box + shift.repeat(2) if box is not None else None
        masks_in = prev_low if (r > 0 and use_mask_input) else None
        multimask = r == 0 and point_first
        with contextlib.nullcontext() if grad else torch.no_grad():
            sparse, dense = model.prompt_encoder(points, boxes, masks_in)
            if masks_in is None:
                dense = dense[..., :h, :w]  # the constant "no mask" embedding, at the crop's size
            low, iou = model.mask_decoder(emb, pe, sparse, dense, multimask)
            up = F.interpolate(low.float(), size=gt.shape[-2:], mode="bilinear",
                               align_corners=False)
        if grad:
            parts = sam_loss(up, iou.float(), gt, weights=weights, valid=valid)
            total = total + parts.total
            trained += 1
        with torch.no_grad():
            pick = iou.argmax(1) if multimask else torch.zeros(n, dtype=torch.long, device=device)
            prev_low = low[rows, pick][:, None].detach().float()
            pred = up[rows, pick] > 0
            if r == 0 or r == rounds - 1:
                chosen = ((pred & gt).flatten(1).sum(1).float()
                          / (pred | gt).flatten(1).sum(1).clamp(min=1).float())
                key = "iou_first" if r == 0 else "iou_last"
                stats[key] = (chosen * valid).sum() / valid.sum().clamp(min=1)
        if r == 0 and grad:
            stats.update(focal=parts.focal, dice=parts.dice, iou_mse=parts.iou_mse)
    loss = total / max(1, trained)
    stats["loss"] = loss.detach()
    # one device sync per step, not one per round
    names = list(stats)
    values = torch.stack([stats[k].float() for k in names]).tolist()
    return loss, dict(zip(names, values))


def _objects_share(batch: dict[str, torch.Tensor], part: int, parts: int
                   ) -> dict[str, torch.Tensor]:
    """The batch with only share ``part`` of ``parts`` of its K objects per crop."""
    if parts == 1:
        return batch
    k = batch["masks"].shape[1]
    lo, hi = part * k // parts, max(part * k // parts + 1, (part + 1) * k // parts)
    return dict(batch, masks=batch["masks"][:, lo:hi], valid=batch["valid"][:, lo:hi])


def _train_rounds(rng: np.random.Generator, config: TrainConfig) -> tuple[int, ...] | None:
    """Rounds that back-propagate: all (None), or round 0 and ``grad_rounds - 1`` others."""
    if config.grad_rounds <= 0 or config.grad_rounds >= config.rounds:
        return None
    later = rng.choice(np.arange(1, config.rounds), config.grad_rounds - 1, replace=False)
    return (0, *sorted(int(r) for r in later))


def reduce_targets(gt: torch.Tensor, valid: torch.Tensor, loss_size: int | None
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Ground truth NxSxS reduced so its side is at most ``loss_size`` (integer factor).

    Returns (masks, valid, factor): a reduced pixel is in the object when at
    least half of its block is; objects that vanish are marked not valid.
    """
    side = gt.shape[-1]
    factor = 1
    if loss_size and side > loss_size:
        factor = -(-side // int(loss_size))
        while side % factor:
            factor += 1
    if factor == 1:
        return gt, valid, 1
    area = F.avg_pool2d(gt[:, None].float(), factor)[:, 0]
    small = area >= 0.5
    return small, valid & small.flatten(1).any(1), factor


# ------------------------------------------------------------ schedule, checkpoints

def progress_of(step: int, wall_s: float, config: TrainConfig) -> float:
    """Fraction of the run done: by steps, or by time when that is further along."""
    done = step / max(1, config.steps)
    if config.time_budget_s:
        done = max(done, wall_s / config.time_budget_s)
    return min(1.0, done)


def lr_at(step: int, config: TrainConfig, wall_s: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_lr_ratio * lr``
    at the end of the run (see :func:`progress_of`)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    start = config.warmup / max(1, config.steps)
    t = min(1.0, max(0.0, progress_of(step, wall_s, config) - start) / max(1e-9, 1 - start))
    ratio = config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return config.lr * ratio


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Optimizer groups of the trained parameters (the encoder's left out when frozen).

    The encoder's learning rate is ``encoder_lr_scale`` times the rest's, its
    trunk's ``trunk_lr_scale`` times the encoder's; with both at 1.0
    everything is one group in the model's parameter order, as runs made
    before the options had (their optimizer state resumes by that order).
    """
    trained = [(name, p) for name, p in model.named_parameters()
               if not (config.freeze_encoder and name.startswith("image_encoder."))
               and not (config.freeze_trunk and name.startswith("image_encoder.trunk."))
               and (not config.trainable or name.startswith(tuple(config.trainable)))]

    enc, trunk = float(config.encoder_lr_scale), float(config.trunk_lr_scale)
    split_trunk = trunk != 1.0 and any(n.startswith("image_encoder.trunk.") for n, _ in trained)
    if enc == 1.0 and not split_trunk:
        return [{"params": [p for _, p in trained], "lr_scale": 1.0}]
    groups = [  # the rest, the encoder (without its trunk when that has its own rate), the trunk
        ([p for n, p in trained if not n.startswith("image_encoder.")], 1.0),
        ([p for n, p in trained if n.startswith("image_encoder.")
          and not (split_trunk and n.startswith("image_encoder.trunk."))], enc),
        ([p for n, p in trained if split_trunk and n.startswith("image_encoder.trunk.")],
         enc * trunk),
    ]
    return [{"params": params, "lr_scale": s} for params, s in groups if params]


def _freeze_batchnorm(module: nn.Module) -> None:
    """Keep BatchNorm layers on their running statistics (their affine weights still train).

    Fine-tuning on small batches otherwise replaces statistics gathered over
    large batches by noisy ones.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


# ------------------------------------------------------------ the loop

def train(
    model: nn.Module,
    *,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    model_name: str = "sam_tiny",
    pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    max_seconds: float | None = None,
    resume: bool = True,
) -> Generator[TrainEvent, None, TrainResult]:
    """Train ``model`` in place (on its device) for ``config.steps`` steps.

    ``pairs`` None trains on generated scenes; otherwise on crops of the
    given (image HxWx3 uint8, labels HxW int) pairs. Checkpoints go to
    ``run_dir/last.pt``; with ``resume`` an existing one is continued (its
    config must match, except for the fields in ``EXTENDABLE``). Stops early, with a checkpoint, after ``max_seconds``
    or on SIGTERM. Logged statistics are appended to ``run_dir/log.jsonl``.
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT_NAME
    device = model.pixel_mean.device
    groups = _param_groups(model, config)
    params = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    step, wall_before, history = 0, 0.0, []
    if resume and ckpt_path.is_file():
        state = load_checkpoint_state(ckpt_path, map_location=device)
        saved = TrainConfig.from_dict(state["config"])
        if dataclasses.replace(saved, **{k: getattr(config, k) for k in EXTENDABLE}) != config:
            raise ValueError(f"{ckpt_path}: made with another training config; use another "
                             "run folder or the same options (only the run's length, "
                             "workers and logging may change on resume)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, wall_before, history = state["step"], state["wall_s"], state["history"]
    if pairs is not None:
        pairs = prepare_pairs(pairs, config.plan.img_size)
    reuse = max(1, int(config.reuse))
    stream = BatchStream(seed=config.seed, plan=config.plan, start=step // reuse,
                         stop=-(-config.steps // reuse), pairs=pairs)
    loader = batch_loader(stream, workers=config.workers)
    amp = config.amp and device.type == "cuda"
    model.train()
    if config.freeze_encoder:
        model.image_encoder.eval()
        model.image_encoder.requires_grad_(False)
    elif config.freeze_trunk:
        model.image_encoder.trunk.eval()
        model.image_encoder.trunk.requires_grad_(False)
    elif config.bn_eval:
        _freeze_batchnorm(model.image_encoder)
    if config.trainable:  # running statistics (BatchNorm) stay as they are too
        model.eval()
        prefixes = tuple(config.trainable)
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(prefixes))
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"no parameter of the model starts with {prefixes}")
    t0 = time.monotonic()
    flag = {"stop": False}
    running: dict[str, list[float]] = {}
    log = run_dir / "log.jsonl"
    run_dir.mkdir(parents=True, exist_ok=True)

    def checkpoint():
        save_checkpoint(ckpt_path, model=model, optimizer=optimizer, step=step, config=config,
                        wall_s=wall_before + time.monotonic() - t0, history=history,
                        model_name=model_name)

    yield TrainEvent("train", step, config.steps, "starting")
    stop = False
    with _stop_on_sigterm(flag):
        for batch in loader:
            feats = None
            for part in range(step % reuse, reuse):
                rng = np.random.default_rng([config.seed, step, 7])
                gen = torch.Generator(device=device)
                gen.manual_seed(int(rng.integers(2**62)))
                wall = wall_before + time.monotonic() - t0
                lr = lr_at(step, config, wall)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                sub = _objects_share(batch, part, reuse)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                    emb = None
                    if config.freeze_trunk:
                        if feats is None:
                            image = _normalise(model, batch["image"].to(device))
                            with torch.no_grad():
                                feats = model.image_encoder.trunk_features(image)
                        emb = model.image_encoder.neck(feats, image)
                    loss, stats = interactive_loss(
                        model, sub, rounds=config.rounds, generator=gen,
                        point_first=bool(rng.random() < config.point_first_prob),
                        use_mask_input=bool(rng.random() < config.mask_input_prob),
                        freeze_encoder=config.freeze_encoder, weights=config.loss,
                        loss_size=config.loss_size, embedding=emb,
                        train_rounds=_train_rounds(rng, config))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                step += 1
                for key, value in stats.items():
                    running.setdefault(key, []).append(value)
                if step % config.log_every == 0 or step == config.steps:
                    entry = {"step": step, "lr": lr,
                             "wall_s": round(wall_before + time.monotonic() - t0, 1)}
                    entry.update({k: round(float(np.mean(v)), 4) for k, v in running.items()})
                    running.clear()
                    history.append(entry)
                    with open(log, "a") as fh:
                        fh.write(json.dumps(entry) + "\n")
                    yield TrainEvent("train", step, config.steps,
                                     f"loss {entry['loss']:.3f} iou "
                                     f"{entry.get('iou_first', 0):.3f}"
                                     f"->{entry.get('iou_last', 0):.3f}")
                elapsed = time.monotonic() - t0
                out_of_time = max_seconds is not None and elapsed >= max_seconds
                done = progress_of(step, wall_before + elapsed, config) >= 1.0
                if step % config.checkpoint_every == 0 or done or out_of_time or flag["stop"]:
                    checkpoint()
                if out_of_time or flag["stop"] or done:
                    stop = True
                    break
            if stop:
                break
    if step == 0 or not ckpt_path.is_file():
        checkpoint()
    model.eval()
    wall = wall_before + time.monotonic() - t0
    return TrainResult(step=step, finished=progress_of(step, wall, config) >= 1.0,
                       wall_s=wall, checkpoint=ckpt_path,
                       history=history)
