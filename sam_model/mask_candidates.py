"""Decode a set of point prompts on one image embedding into filtered masks.

This is the per-embedding core of automatic mask generation, shared by
``SamAutomaticMaskGenerator`` (one embedding per crop) and the tiled engine
(one embedding per tile, through :func:`decode_points`).

Work per batch of points, cheapest first, so that full-resolution work is
done only for masks that can still be kept:

1. the decoder's transformer and IoU head run for the whole batch; the
   predicted-IoU filter is applied there, and the mask upscaling runs only
   for prompts with a passing candidate (``decode_passing``);
2. the stability score of the survivors is computed on their upsampled
   logits, as the official generator does, but cell by cell from the
   low-resolution logits (``logit_cells``): only cells that straddle a
   threshold are evaluated pixel by pixel;
3. the masks that pass are thresholded the same way and stored as their
   bounding-box crop only (a few KB instead of ``H x W``), boxes included;
   the optional crop-edge filter uses those boxes.

Box NMS runs once over all batches, in torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .amg_utils import box_near_crop_edge, nms
from .logit_cells import CellUpsampler
from .mask_decoder import MaskDecoder

__all__ = [
    "Candidates",
    "decode_candidates",
    "decode_low_res",
    "decode_passing",
    "to_input_frame",
]

@dataclass
class Candidates:
    """Masks kept by the filters, each stored as its bounding-box crop.

    crops: list of K ``(h_i, w_i)`` bool numpy arrays, mask ``i`` restricted to
        ``boxes[i]`` (rows ``y0..y1``, columns ``x0..x1`` inclusive).
    boxes: ``(K, 4)`` int64 XYXY, inclusive max, in the image frame.
    iou_preds, stability: ``(K,)`` float32.
    points: ``(K, 2)`` float64 XY prompt that produced each mask.
    image_hw: ``(H, W)`` of the frame the boxes refer to.
    n_refined: how many masks were decoded a second time to get these (work done,
        kept by :meth:`select`; see ``refine`` of :func:`decode_candidates`).
    """

    crops: list[np.ndarray]
    boxes: torch.Tensor
    iou_preds: torch.Tensor
    stability: torch.Tensor
    points: torch.Tensor
    image_hw: tuple[int, int]
    n_refined: int = 0

    def __len__(self) -> int:
        return len(self.crops)

    @classmethod
    def empty(cls, image_hw: tuple[int, int], n_refined: int = 0) -> Candidates:
        return cls(
            crops=[],
            boxes=torch.zeros(0, 4, dtype=torch.int64),
            iou_preds=torch.zeros(0, dtype=torch.float32),
            stability=torch.zeros(0, dtype=torch.float32),
            points=torch.zeros(0, 2, dtype=torch.float64),
            image_hw=image_hw,
            n_refined=n_refined,
        )

    def select(self, index: torch.Tensor) -> Candidates:
        """The candidates at ``index`` (int64 indices, in that order)."""
        idx = index.cpu().tolist()
        return Candidates(
            crops=[self.crops[i] for i in idx],
            boxes=self.boxes[index],
            iou_preds=self.iou_preds[index],
            stability=self.stability[index],
            points=self.points[index],
            image_hw=self.image_hw,
            n_refined=self.n_refined,
        )

    @classmethod
    def concat(cls, parts: list[Candidates], image_hw: tuple[int, int]) -> Candidates:
        """Join parts (no copies of the crops)."""
        refined = sum(p.n_refined for p in parts)
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(image_hw, refined)
        return cls(
            crops=[c for p in parts for c in p.crops],
            boxes=torch.cat([p.boxes for p in parts]),
            iou_preds=torch.cat([p.iou_preds for p in parts]),
            stability=torch.cat([p.stability for p in parts]),
            points=torch.cat([p.points for p in parts]),
            image_hw=image_hw,
            n_refined=refined,
        )

    def full_masks(self) -> torch.Tensor:
        """``(K, H, W)`` bool tensor of the masks in the full frame."""
        h, w = self.image_hw
        out = torch.zeros(len(self.crops), h, w, dtype=torch.bool)
        for i, (crop, box) in enumerate(zip(self.crops, self.boxes.tolist())):
            x0, y0 = box[0], box[1]
            ch, cw = crop.shape
            out[i, y0 : y0 + ch, x0 : x0 + cw] = torch.from_numpy(crop)
        return out


def to_input_frame(points_xy, original_hw, input_hw) -> np.ndarray:
    """``(N, 2)`` XY pixels of the original image -> the embedded (resized) frame.

    Scales each axis by input/original size: the official resize when the
    image was resized to the model's long side, and the identity when an
    embedding was computed on the unresized image (e.g. a padded tile).
    Returns float64.
    """
    out = np.array(points_xy, dtype=np.float64, copy=True).reshape(-1, 2)
    out[:, 0] = out[:, 0] * (int(input_hw[1]) / int(original_hw[1]))
    out[:, 1] = out[:, 1] * (int(input_hw[0]) / int(original_hw[0]))
    return out


def _prompt_embeddings(predictor, points_xy: np.ndarray, masks: torch.Tensor | None = None):
    model = predictor.model
    coords = to_input_frame(points_xy, predictor.original_size, predictor.input_size)
    # float32: what the prompt encoder computes in anyway (and all that MPS supports)
    coords = torch.as_tensor(coords, dtype=torch.float32, device=predictor.device)[:, None, :]
    labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=coords.device)
    return model.prompt_encoder(points=(coords, labels), boxes=None, masks=masks)


@torch.no_grad()
def decode_low_res(
    predictor, points_xy: np.ndarray, *, multimask: bool = True,
    mask_input: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run prompt encoder and mask decoder for single positive points.

    predictor: a SamPredictor with an image (or embedding) set.
    points_xy: ``(B, 2)`` XY in pixels of the predictor's original image.
    mask_input: ``(B, 1, 4h, 4w)`` low-resolution logits given with each point
    (a previous prediction), or None.
    Returns low-resolution logits ``(B, M, 4h, 4w)`` and IoU predictions
    ``(B, M)``, M = 3 with ``multimask`` else 1. Nothing is upsampled.
    """
    model = predictor.model
    sparse, dense = _prompt_embeddings(predictor, points_xy, mask_input)
    kwargs = {}
    high_res = getattr(predictor, "high_res_features", None)
    if high_res is not None:  # SAM 2: high-resolution maps in, (masks, iou, tokens, object) out
        kwargs["high_res_features"] = high_res
    out = model.mask_decoder(
        image_embeddings=predictor.features,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        **kwargs,
    )
    return out[0], out[1]


@torch.no_grad()
def refine_with_masks(predictor, points_xy: np.ndarray, low_res: torch.Tensor,
                      batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """One mask-to-mask refinement step: each mask decoded again from its point and its own
    low-resolution logits as the mask prompt, one output (the step SAM 2's generator
    runs with ``use_m2m``). ``points_xy`` (K, 2) original-image XY; ``low_res``
    (K, 4h, 4w) logits. Returns the refined ``(logits (K, 4h, 4w), iou (K,))``.
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    logits, ious = [], []
    for start in range(0, len(pts), batch):
        part = low_res[start:start + batch, None].to(predictor.device, torch.float32)
        out, iou = decode_low_res(predictor, pts[start:start + batch], multimask=False,
                                  mask_input=part)
        logits.append(out[:, 0])
        ious.append(iou[:, 0])
    if not logits:
        return low_res, low_res.new_zeros(0)
    return torch.cat(logits), torch.cat(ious)


def _splits_decoder(decoder) -> bool:
    """Whether the decoder is ours, whose parts can run separately (see below)."""
    return isinstance(decoder, MaskDecoder)


@torch.no_grad()
def decode_passing(
    predictor, points_xy: np.ndarray, *, multimask: bool, pred_iou_thresh: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Low-res logits of the candidates whose predicted IoU passes the filter.

    Returns ``(logits (K, 4h, 4w), iou (K,), prompt (K,) int64)``, candidates in
    prompt-major order (as the official generator flattens them). With our
    ``MaskDecoder`` the IoU head runs first, on the transformer's output, and
    the mask upscaling (about a third of the decoder's work) runs only for
    prompts with at least one passing candidate; the logits are the ones the
    full decoder returns. Other decoders run whole, then get filtered.
    """
    model = predictor.model
    decoder = model.mask_decoder
    if not _splits_decoder(decoder):
        low_res, iou = decode_low_res(predictor, points_xy, multimask=multimask)
        m = low_res.shape[1]
        keep = iou > pred_iou_thresh if pred_iou_thresh > 0.0 else torch.ones_like(iou, dtype=torch.bool)
        idx = keep.flatten().nonzero().flatten()
        return low_res.flatten(0, 1)[idx], iou.flatten()[idx], idx // m
    sparse, dense = _prompt_embeddings(predictor, points_xy)
    wanted = list(range(1, decoder.num_mask_tokens)) if multimask else [0]
    hs, keys, (h, w) = decoder.run_transformer(
        predictor.features, model.prompt_encoder.get_dense_pe(), sparse, dense)
    iou = decoder.iou_from_tokens(hs, wanted)
    if pred_iou_thresh > 0.0:
        keep = iou > pred_iou_thresh
    else:
        keep = torch.ones_like(iou, dtype=torch.bool)
    prompts = keep.any(dim=1).nonzero().flatten()
    if prompts.numel() == 0:
        side = 4 * h, 4 * w
        empty = torch.zeros(0, *side, dtype=torch.float32, device=hs.device)
        return empty, iou.new_zeros(0), prompts
    logits = decoder.masks_from_tokens(hs[prompts], keys[prompts], (h, w), wanted)  # (P, M, 4h, 4w)
    sub = keep[prompts]
    pos = sub.flatten().nonzero().flatten()
    m = len(wanted)
    return logits.flatten(0, 1)[pos], iou[prompts].flatten()[pos], prompts[pos // m]


def upsampler_for(predictor, low_hw: tuple[int, int],
                  out_hw: tuple[int, int] | None = None) -> CellUpsampler:
    """The cell upsampler matching the predictor's current image sizes (``out_hw``: another
    output size than the predictor's original image)."""
    return CellUpsampler(
        low_hw=low_hw,
        img_size=int(predictor.model.image_encoder.img_size),
        input_hw=tuple(predictor.input_size),
        out_hw=tuple(out_hw or predictor.original_size),
        device=predictor.device,
    )


@torch.no_grad()
def _filter_batch(
    predictor,
    points_xy: np.ndarray,
    *,
    pred_iou_thresh: float,
    stability_score_thresh: float,
    stability_score_offset: float,
    multimask: bool,
    crop_box: list[int] | None,
    full_box: list[int] | None,
    upsampler: list,
    stability_hw: tuple[int, int] | None = None,
    refine: bool = False,
) -> Candidates:
    image_hw = (int(predictor.original_size[0]), int(predictor.original_size[1]))
    threshold = float(predictor.model.mask_threshold)
    low_res, iou, prompt = decode_passing(
        predictor, points_xy, multimask=multimask, pred_iou_thresh=pred_iou_thresh
    )
    points = torch.as_tensor(np.asarray(points_xy, dtype=np.float64))[prompt.cpu()]
    if not upsampler:
        low_hw = tuple(low_res.shape[-2:])
        upsampler.append(upsampler_for(predictor, low_hw))
        upsampler.append(upsampler[0] if stability_hw is None
                         else upsampler_for(predictor, low_hw, out_hw=stability_hw))
    ups = upsampler[0]

    def stable(low_res, iou, points):
        stability = upsampler[1].stability(low_res, threshold, stability_score_offset)
        if stability_score_thresh > 0.0:
            keep = (stability >= stability_score_thresh).nonzero().flatten()
            low_res, iou, points, stability = (low_res[keep], iou[keep], points[keep.cpu()],
                                               stability[keep])
        return low_res, iou, points, stability

    low_res, iou, points, stability = stable(low_res, iou, points)
    n_refined = len(points) if refine else 0
    if n_refined:  # the survivors decoded once more; the filters again on the refined masks
        low_res, iou = refine_with_masks(predictor, points.numpy(), low_res)
        if pred_iou_thresh > 0.0:
            keep = (iou > pred_iou_thresh).nonzero().flatten()
            low_res, iou, points = low_res[keep], iou[keep], points[keep.cpu()]
        low_res, iou, points, stability = stable(low_res, iou, points)
    crops, boxes = ups.mask_crops(low_res, threshold)
    found = Candidates(
        crops=crops,
        boxes=boxes,
        iou_preds=iou.float().cpu(),
        stability=stability.cpu(),
        points=points,
        image_hw=image_hw,
        n_refined=n_refined,
    )
    if crop_box is not None and len(found):
        inner = ~box_near_crop_edge(boxes, crop_box, full_box)
        if not bool(inner.all()):
            found = found.select(inner.nonzero().flatten())
    return found


@torch.no_grad()
def decode_candidates(
    predictor,
    points_xy: np.ndarray,
    *,
    points_per_batch: int = 64,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    stability_score_offset: float = 1.0,
    box_nms_thresh: float = 0.7,
    multimask: bool = True,
    crop_box: list[int] | None = None,
    full_box: list[int] | None = None,
    stability_hw: tuple[int, int] | None = None,
    refine: bool = False,
) -> Candidates:
    """Decode points in batches, filter, and remove duplicates by box NMS.

    points_xy: ``(N, 2)`` XY pixels in the predictor's original image.
    crop_box / full_box: when given (XYXY, the predictor's image being the
    crop ``crop_box`` of a ``full_box`` image), masks whose box lies within 20 px
    of a crop edge that is not an image edge are dropped (boxes stay in the
    crop's frame). ``stability_hw``: compute the stability score on the logits upsampled
    to this size instead of the original image's (the model's own resolution of an
    image the masks are then scaled up from, as the reference scores it there).
    Returns candidates ordered by decreasing predicted IoU.
    """
    if points_per_batch < 1:
        raise ValueError(f"points_per_batch must be at least 1, got {points_per_batch}")
    if not predictor.is_image_set:
        raise RuntimeError("set an image or an embedding on the predictor first")
    image_hw = (int(predictor.original_size[0]), int(predictor.original_size[1]))
    points_xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    upsampler: list = []  # built on the first batch, when the low-res size is known
    parts = [
        _filter_batch(
            predictor,
            points_xy[start : start + points_per_batch],
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            multimask=multimask,
            crop_box=crop_box,
            full_box=full_box,
            upsampler=upsampler,
            stability_hw=stability_hw,
            refine=refine,
        )
        for start in range(0, len(points_xy), points_per_batch)
    ]
    found = Candidates.concat(parts, image_hw)
    keep = nms(found.boxes, found.iou_preds, box_nms_thresh)
    return found.select(keep)
