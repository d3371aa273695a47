"""``Sam2Predictor``: ``SamPredictor``'s calls for a SAM 2.1 model.

``sam_model.SamPredictor(model)`` returns one when ``model`` is a ``Sam2``.
What differs from SAM 1 follows the official image predictor:

* ``set_image`` resizes the whole image to SxS (both sides, not the long
  side; antialiased bilinear on 0..1 values) and normalises with ImageNet's
  mean and std; prompts are scaled by S/W and S/H;
* a box is two points with labels 2 and 3 placed before the clicks;
* masks are one bilinear resize of the low-res logits to the image size;
  returned low-res logits are clamped to [-32, 32];
* the embedding comes with two high-resolution maps. ``set_image_embedding``
  takes them packed (``Sam2.pack_embedding``, what the tiled engine stores) or
  separately, and an ``input_size`` smaller than SxS for a tile embedded
  unresized and padded (``Sam2.encode_images``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ImageFormatError, SamModelError
from .predictor import SamPredictor
from .sam2_decoder import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT
from .transforms import to_rgb_uint8

LOW_RES_CLAMP = 32.0


class Sam2Predictor(SamPredictor):
    """Prompted masks on one image (or a batch of images) with a ``Sam2``."""

    def reset_image(self) -> None:
        super().reset_image()
        self.high_res_features: list[Tensor] | None = None
        self._batch: list[tuple[Tensor, list[Tensor], tuple[int, int]]] | None = None

    # -- images ------------------------------------------------------------------------
    def _square_input(self, image: np.ndarray, image_format: str) -> tuple[Tensor, tuple]:
        """HWC image -> (normalised 1x3xSxS, original (H, W))."""
        if image_format not in ("RGB", "BGR"):
            raise ImageFormatError(f"image_format must be 'RGB' or 'BGR', not {image_format!r}")
        image = to_rgb_uint8(image)
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)
        s = self.model.img_size
        x = x.to(self.device)[None]
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                              antialias=True)
        return self.model.normalize(x), tuple(int(v) for v in image.shape[:2])

    @torch.no_grad()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed an image: HxWx3 uint8 RGB (other layouts converted as for SAM 1)."""
        x, original = self._square_input(image, image_format)
        self.reset_image()
        self.features, self.high_res_features = self.model.encode(x)
        s = self.model.img_size
        self.original_size, self.input_size = original, (s, s)
        self.is_image_set = True

    @torch.no_grad()
    def set_image_batch(self, images: Sequence[np.ndarray], image_format: str = "RGB") -> None:
        """Embed several images in one encoder call; prompt them with :meth:`predict_batch`."""
        if not len(images):
            raise ImageFormatError("set_image_batch needs at least one image")
        inputs = [self._square_input(img, image_format) for img in images]
        self.reset_image()
        emb, high = self.model.encode(torch.cat([x for x, _ in inputs], dim=0))
        self._batch = [(emb[i:i + 1], [h[i:i + 1] for h in high], orig)
                       for i, (_, orig) in enumerate(inputs)]
        self.is_image_set = False  # single-image calls need set_image

    def set_torch_image(self, transformed_image: Tensor, original_image_size: tuple[int, ...]
                        ) -> None:
        raise SamModelError("SAM 2 resizes images to a square itself: use set_image, or "
                            "set_image_embedding with an embedding from Sam2.encode_images")

    def set_image_embedding(self, features: Tensor, original_size: tuple[int, int],
                            input_size: tuple[int, int] | None = None,
                            high_res_features: Sequence[Tensor] | None = None) -> None:
        """Use a precomputed embedding instead of running the encoder.

        ``features``: packed 1x(4C)xhxw (``Sam2.pack_embedding`` / ``encode_images``),
        or 1xCxhxw with ``high_res_features`` [1x(C/8)x4hx4w, 1x(C/4)x2hx2w].
        ``original_size``: (H, W) prompts refer to; ``input_size``: the part of
        the SxS input the image filled (default SxS, the square resize of
        ``set_image``; (h, w) for a tile embedded unresized and padded).
        """
        features = torch.as_tensor(features)
        if features.ndim == 3:
            features = features[None]
        c = self.model.config.d_model
        grid = tuple(self.model.prompt_encoder.image_embedding_size)
        if high_res_features is None:
            if features.ndim != 4 or features.shape[0] != 1 or features.shape[1] != 4 * c:
                raise SamModelError(
                    f"expected a packed SAM 2 embedding of shape (1, {4 * c}, {grid[0]}, "
                    f"{grid[1]}) or high_res_features, got {tuple(features.shape)}")
            features, high = self.model.unpack_embedding(features)
        else:
            high = [torch.as_tensor(h) for h in high_res_features]
        expected = [(1, c, *grid), (1, c // 8, 4 * grid[0], 4 * grid[1]),
                    (1, c // 4, 2 * grid[0], 2 * grid[1])]
        got = [tuple(t.shape) for t in (features, *high)]
        if got != expected:
            raise SamModelError(f"SAM 2 embedding shapes {got} do not fit this model {expected}")
        s = self.model.img_size
        inp = (s, s) if input_size is None else tuple(int(v) for v in input_size)
        if max(inp) > s:
            raise SamModelError(f"input_size {inp} exceeds the model input size")
        self.reset_image()
        self.features = features.to(self.device, torch.float32)
        self.high_res_features = [h.to(self.device, torch.float32) for h in high]
        self.original_size = tuple(int(v) for v in original_size)
        self.input_size = inp
        self.is_image_set = True

    def get_packed_embedding(self) -> Tensor:
        """The current embedding with its high-resolution maps, packed: 1x(4C)xhxw."""
        self._require_image()
        return self.model.pack_embedding(self.features, self.high_res_features)

    # -- prompts ----------------------------------------------------------------------
    @torch.no_grad()
    def predict_torch(self, point_coords: Tensor | None, point_labels: Tensor | None,
                      boxes: Tensor | None = None, mask_input: Tensor | None = None,
                      multimask_output: bool = True, return_logits: bool = False
                      ) -> tuple[Tensor, Tensor, Tensor]:
        """B prompt sets in the input frame (as ``SamPredictor.predict_torch``).

        Returns masks BxCxHxW, IoU BxC and low-res logits BxCx4hx4w clamped to ±32.
        """
        self._require_image()
        return self._decode(self.features, self.high_res_features, self.input_size,
                            self.original_size, point_coords, point_labels, boxes, mask_input,
                            multimask_output, return_logits)

    def _decode(self, features, high_res, input_size, original_size, point_coords,
                point_labels, boxes, mask_input, multimask_output, return_logits):
        points = None
        if point_coords is not None:
            points = (point_coords.to(self.device, torch.float32), point_labels.to(self.device))
        if boxes is not None:
            corners = boxes.to(self.device, torch.float32).reshape(-1, 2, 2)
            corner_labels = torch.tensor([[LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]],
                                         device=self.device).expand(corners.shape[0], 2)
            if points is None:
                points = (corners, corner_labels)
            else:
                points = (torch.cat([corners, points[0]], dim=1),
                          torch.cat([corner_labels.to(points[1].dtype), points[1]], dim=1))
        model = self.model
        sparse, dense = model.prompt_encoder(points=points, boxes=None, masks=mask_input)
        low_res, iou, _, _ = model.mask_decoder(
            image_embeddings=features, image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask_output, high_res_features=high_res)
        masks = model.postprocess_masks(low_res, input_size, original_size)
        if not return_logits:
            masks = masks > model.mask_threshold
        return masks, iou, low_res.clamp(-LOW_RES_CLAMP, LOW_RES_CLAMP)

    def predict_batch(self, point_coords_batch=None, point_labels_batch=None, box_batch=None,
                      mask_input_batch=None, multimask_output: bool = True,
                      return_logits: bool = False
                      ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """One prompt set per image of :meth:`set_image_batch` (lists, None for none)."""
        if self._batch is None:
            raise RuntimeError("no image batch set: call set_image_batch() first")
        out: tuple[list, list, list] = ([], [], [])
        for i, (emb, high, original) in enumerate(self._batch):
            self.features, self.high_res_features = emb, high
            s = self.model.img_size
            self.original_size, self.input_size, self.is_image_set = original, (s, s), True
            try:
                res = self.predict(
                    None if point_coords_batch is None else point_coords_batch[i],
                    None if point_labels_batch is None else point_labels_batch[i],
                    None if box_batch is None else box_batch[i],
                    None if mask_input_batch is None else mask_input_batch[i],
                    multimask_output=multimask_output, return_logits=return_logits)
            finally:
                self.features = self.high_res_features = None
                self.original_size = self.input_size = None
                self.is_image_set = False
            for acc, r in zip(out, res):
                acc.append(r)
        return out
