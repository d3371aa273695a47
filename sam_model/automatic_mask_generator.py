"""Automatic mask generation: a grid of point prompts over the whole image.

``SamAutomaticMaskGenerator`` takes the official generator's parameters and
defaults and returns the same records; :func:`decode_points` is the
per-embedding step on its own, for callers that manage embeddings themselves
(the tiled raster engine).

Where the time goes and what is done about it (see ``mask_candidates``):
filters run on low-resolution logits first, only survivors are upsampled,
thresholded and boxed in batches; kept masks live as bounding-box crops, so
there is no full-image run-length encoding and decoding between stages, no
per-batch list copies, and NMS is a torch IoU matrix. Run-length encodings
are written once, at the end, from the crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .amg_utils import crop_boxes_for_layers, layer_point_grids, nms, xyxy_to_xywh
from .mask_candidates import Candidates, decode_candidates
from .mask_cleanup import remove_small_regions
from .predictor import SamPredictor
from .rle import coco_rle_from_uncompressed, rle_from_crop

__all__ = ["SamAutomaticMaskGenerator", "MaskBatch", "decode_points"]

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


@dataclass
class MaskBatch(Candidates):
    """Masks decoded from point prompts on one embedding, after filters and NMS.

    The candidates of :mod:`mask_candidates` under the names the tiled engine
    reads. Masks are held as bounding-box crops (small); ``masks`` builds the
    full-size stack on demand.

    crops: K ``(h_i, w_i)`` bool numpy arrays, mask ``i`` inside ``boxes_xyxy[i]``
        (its top-left pixel at ``(y0, x0)``).
    iou_preds: ``(K,)`` float32 predicted IoU.
    stability: ``(K,)`` float32 stability score.
    boxes / boxes_xyxy: ``(K, 4)`` int64 XYXY with inclusive max coordinates.
    points: ``(K, 2)`` float64 XY pixel of the prompt that gave each mask.
    image_hw: ``(H, W)``, the predictor's original image size.
    Ordered by decreasing predicted IoU.
    """

    @property
    def boxes_xyxy(self) -> torch.Tensor:
        """Same as ``boxes``."""
        return self.boxes

    @property
    def masks(self) -> torch.Tensor:
        """``(K, H, W)`` bool torch tensor at the original image size (built on access)."""
        return self.full_masks()


def decode_points(
    predictor,
    points_xy,
    *,
    points_per_batch: int = 64,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    stability_score_offset: float = 1.0,
    box_nms_thresh: float = 0.7,
    multimask: bool = True,
    stability_hw: tuple[int, int] | None = None,
    refine: bool = False,
) -> MaskBatch:
    """Decode single positive point prompts on the predictor's current embedding.

    predictor: a ``SamPredictor`` whose image or embedding is set.
    points_xy: ``(N, 2)`` XY pixels of the predictor's original image.
    The filters are the official generator's per-crop ones: predicted IoU
    greater than ``pred_iou_thresh``, stability score (at
    ``mask_threshold +- stability_score_offset``) at least
    ``stability_score_thresh``, then box NMS at ``box_nms_thresh``; a threshold
    of 0 disables its filter. No crop-edge filter is applied. ``stability_hw``: see
    :func:`sam_model.mask_candidates.decode_candidates`; so is ``refine`` (one
    mask-to-mask refinement step of each mask that passes the filters).
    """
    found = decode_candidates(
        predictor,
        points_xy,
        points_per_batch=points_per_batch,
        pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh,
        stability_score_offset=stability_score_offset,
        box_nms_thresh=box_nms_thresh,
        multimask=multimask,
        stability_hw=stability_hw,
        refine=refine,
    )
    return MaskBatch(**vars(found))


class SamAutomaticMaskGenerator:
    """Generate masks for a whole image from a grid of point prompts.

    Parameters and defaults are the official generator's:

    points_per_side: points along each side of the grid (``None`` when
        ``point_grids`` is given).
    points_per_batch: points decoded at once.
    pred_iou_thresh: keep masks whose predicted IoU is greater than this.
    stability_score_thresh: keep masks whose stability score is at least this.
    stability_score_offset: logit offset used by the stability score.
    box_nms_thresh: box IoU above which a lower-scored mask of the same crop
        is a duplicate.
    crop_n_layers: extra layers of zoomed crops (layer i has 2**i x 2**i crops).
    crop_nms_thresh: box IoU for duplicates between crops (smaller crops win).
    crop_overlap_ratio: overlap of first-layer crops as a fraction of the short side.
    crop_n_points_downscale_factor: points per side of layer i are divided by
        this to the power i.
    point_grids: explicit ``(N, 2)`` XY grids in [0, 1], one per layer.
    min_mask_region_area: when > 0, holes and islands smaller than this are
        removed afterwards (then NMS again, preferring untouched masks).
    output_mode: ``"binary_mask"`` (HxW bool array), ``"uncompressed_rle"`` or
        ``"coco_rle"`` (COCO's compressed string; no pycocotools needed).
    """

    def __init__(
        self,
        model,
        *,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")
        if points_per_side is not None:
            grids = layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        else:
            grids = [np.asarray(g, dtype=np.float64).reshape(-1, 2) for g in point_grids]
            if len(grids) < crop_n_layers + 1:
                raise ValueError(
                    f"point_grids has {len(grids)} grids, crop_n_layers={crop_n_layers} "
                    f"needs {crop_n_layers + 1}"
                )
        self.point_grids = grids
        self.predictor = SamPredictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks of ``image`` (HWC uint8 RGB) as a list of records.

        Each record has: ``segmentation`` (per ``output_mode``), ``area`` (int
        pixels), ``bbox`` (XYWH list, width = x_max - x_min), ``predicted_iou``,
        ``point_coords`` (``[[x, y]]``), ``stability_score`` and ``crop_box``
        (XYWH of the crop that produced the mask).
        """
        found, crop_of = self._generate_candidates(image)
        if self.min_mask_region_area > 0 and len(found):
            found, crop_of = self._clean_small_regions(found, crop_of)
        return self._records(found, crop_of)

    # -- stages ----------------------------------------------------------------
    def _generate_candidates(self, image: np.ndarray) -> tuple[Candidates, torch.Tensor]:
        image = np.asarray(image)
        if image.ndim < 2:
            raise ValueError(f"image must be HWC, got shape {image.shape}")
        full_hw = (int(image.shape[0]), int(image.shape[1]))
        crop_boxes, layers = crop_boxes_for_layers(
            full_hw, self.crop_n_layers, self.crop_overlap_ratio
        )
        parts, crop_ids = [], []
        for i, (crop_box, layer) in enumerate(zip(crop_boxes, layers)):
            part = self._process_crop(image, crop_box, layer, full_hw)
            parts.append(part)
            crop_ids.append(torch.full((len(part),), i, dtype=torch.int64))
        found = Candidates.concat(parts, full_hw)
        crop_tab = torch.as_tensor(crop_boxes, dtype=torch.int64)
        crop_of = crop_tab[torch.cat(crop_ids)] if crop_ids else torch.zeros(0, 4, dtype=torch.int64)
        if len(crop_boxes) > 1 and len(found):
            area = (crop_of[:, 2] - crop_of[:, 0]) * (crop_of[:, 3] - crop_of[:, 1])
            keep = nms(found.boxes, 1.0 / area, self.crop_nms_thresh)
            found, crop_of = found.select(keep), crop_of[keep]
        return found, crop_of

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], layer: int, full_hw: tuple[int, int]
    ) -> Candidates:
        x0, y0, x1, y1 = crop_box
        self.predictor.set_image(image[y0:y1, x0:x1])
        crop_hw = (y1 - y0, x1 - x0)
        points = self.point_grids[layer] * np.array([crop_hw[1], crop_hw[0]], dtype=np.float64)
        found = decode_candidates(
            self.predictor,
            points,
            points_per_batch=self.points_per_batch,
            pred_iou_thresh=self.pred_iou_thresh,
            stability_score_thresh=self.stability_score_thresh,
            stability_score_offset=self.stability_score_offset,
            box_nms_thresh=self.box_nms_thresh,
            crop_box=crop_box,
            full_box=[0, 0, full_hw[1], full_hw[0]],
        )
        self.predictor.reset_image()
        shift = torch.tensor([x0, y0, x0, y0], dtype=torch.int64)
        found.boxes = found.boxes + shift
        found.points = found.points + torch.tensor([x0, y0], dtype=torch.float64)
        found.image_hw = full_hw
        return found

    def _clean_small_regions(
        self, found: Candidates, crop_of: torch.Tensor
    ) -> tuple[Candidates, torch.Tensor]:
        """Remove small holes and islands, then NMS preferring unchanged masks."""
        new_crops, new_boxes, unchanged = [], [], []
        for crop, box in zip(found.crops, found.boxes.tolist()):
            cleaned, (ty, tx), changed = remove_small_regions(
                crop, (box[1], box[0]), found.image_hw, self.min_mask_region_area
            )
            new_crops.append(cleaned)
            if cleaned.any():
                new_boxes.append([tx, ty, tx + cleaned.shape[1] - 1, ty + cleaned.shape[0] - 1])
            else:
                new_boxes.append([0, 0, 0, 0])
            unchanged.append(0.0 if changed else 1.0)
        boxes = torch.as_tensor(new_boxes, dtype=torch.int64)
        scores = torch.as_tensor(unchanged, dtype=torch.float32)
        keep = nms(boxes, scores, max(self.box_nms_thresh, self.crop_nms_thresh))
        out = found.select(keep)
        for j, i in enumerate(keep.tolist()):
            if unchanged[i] == 0.0:
                out.crops[j] = new_crops[i]
                out.boxes[j] = boxes[i]
        return out, crop_of[keep]

    def _records(self, found: Candidates, crop_of: torch.Tensor) -> list[dict[str, Any]]:
        h, w = found.image_hw
        records = []
        boxes = found.boxes.tolist()
        points = found.points.tolist()
        ious = found.iou_preds.tolist()
        stabs = found.stability.tolist()
        crops_xyxy = crop_of.tolist()
        for i, crop in enumerate(found.crops):
            x0, y0 = boxes[i][0], boxes[i][1]
            if self.output_mode == "binary_mask":
                seg = np.zeros((h, w), dtype=bool)
                seg[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
            else:
                seg = rle_from_crop(crop, (y0, x0), (h, w))
                if self.output_mode == "coco_rle":
                    seg = coco_rle_from_uncompressed(seg)
            records.append(
                {
                    "segmentation": seg,
                    "area": int(crop.sum()),
                    "bbox": xyxy_to_xywh(boxes[i]),
                    "predicted_iou": ious[i],
                    "point_coords": [points[i]],
                    "stability_score": stabs[i],
                    "crop_box": xyxy_to_xywh(crops_xyxy[i]),
                }
            )
        return records
