"""``SamPredictor``: embed an image once, then decode many prompts on it.

Numpy level: ``set_image`` / ``predict`` (prompts in pixels of the original
image). Torch level: ``set_torch_image`` / ``predict_torch`` (prompts already
in the resized input frame, batched). ``set_image_embedding`` restores a
cached embedding without running the encoder.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .errors import ImageFormatError, SamModelError
from .sam import Sam
from .transforms import ResizeLongestSide, to_rgb_uint8


class SamPredictor:
    """Prompted mask prediction on one image at a time.

    Args:
        sam_model: a ``Sam`` (any size; its ``img_size`` sets the resize target),
            or a ``Sam2``, for which a ``Sam2Predictor`` is returned.
    """

    def __new__(cls, sam_model=None, *args, **kwargs):
        if cls is SamPredictor and getattr(sam_model, "family", "sam") == "sam2":
            # imported here: sam2_predictor subclasses this class
            from .sam2_predictor import Sam2Predictor

            return super().__new__(Sam2Predictor)
        return super().__new__(cls)

    def __init__(self, sam_model: Sam) -> None:
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self.reset_image()

    # -- image ---------------------------------------------------------------
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed an image.

        ``image``: HxWx3 uint8 RGB. Gray (HxW, HxWx1), gray+alpha (HxWx2),
        RGBA, 16-bit and float images are converted first by the rule in
        ``sam_model.transforms.to_rgb_uint8`` (gray repeated, alpha dropped,
        non-uint8 values scaled to 0..255). ``image_format``: 'RGB' or 'BGR'.
        """
        if image_format not in ("RGB", "BGR"):
            raise ImageFormatError(f"image_format must be 'RGB' or 'BGR', not {image_format!r}")
        image = to_rgb_uint8(image)
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        resized = self.transform.apply_image(image)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None]
        self.set_torch_image(tensor.to(torch.float32), image.shape[:2])

    @torch.no_grad()
    def set_torch_image(
        self, transformed_image: Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Embed an image already resized so its long side is ``img_size``.

        transformed_image: 1x3xhxw float 0..255 (not normalised, not padded);
        original_image_size: (H, W) of the image prompts refer to.
        """
        s = self.model.image_encoder.img_size
        if (
            transformed_image.ndim != 4
            or transformed_image.shape[0] != 1
            or transformed_image.shape[1] != 3
            or max(transformed_image.shape[2:]) != s
        ):
            raise ImageFormatError(
                f"set_torch_image expects a 1x3xhxw image with long side {s}, "
                f"got shape {tuple(transformed_image.shape)}"
            )
        self.reset_image()
        self.original_size = tuple(int(v) for v in original_image_size)
        self.input_size = tuple(int(v) for v in transformed_image.shape[-2:])
        x = self.model.preprocess(transformed_image.to(self.device, torch.float32))
        self.features = self.model.encode(x)
        self.is_image_set = True

    def set_image_embedding(
        self,
        features: Tensor,
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Use a precomputed embedding (1xCxhxw) instead of running the encoder.

        ``original_size``: (H, W) of the image prompts refer to; ``input_size``:
        (h, w) of the resized image that was embedded (default: the resize of
        ``original_size``; equal to it when the image was embedded unresized,
        e.g. a tile no larger than ``img_size``).
        """
        features = torch.as_tensor(features)
        c = self.model.prompt_encoder.embed_dim
        grid = tuple(self.model.prompt_encoder.image_embedding_size)
        if features.ndim == 3:
            features = features[None]
        if features.ndim != 4 or features.shape[0] != 1 or features.shape[1] != c or tuple(
            features.shape[2:]
        ) != grid:
            raise SamModelError(
                f"expected an embedding of shape (1, {c}, {grid[0]}, {grid[1]}), "
                f"got {tuple(features.shape)}"
            )
        original = tuple(int(v) for v in original_size)
        if input_size is None:
            input_size = self.transform.get_preprocess_shape(*original, self.transform.target_length)
        inp = tuple(int(v) for v in input_size)
        if max(inp) > self.model.image_encoder.img_size:
            raise SamModelError(f"input_size {inp} exceeds the model input size")
        self.reset_image()
        self.features = features.to(self.device, torch.float32)
        self.original_size = original
        self.input_size = inp
        self.is_image_set = True

    def get_image_embedding(self) -> Tensor:
        """The current image embedding, 1xCxhxw."""
        self._require_image()
        return self.features

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        """Forget the current image."""
        self.is_image_set = False
        self.features = None
        self.original_size = None
        self.input_size = None

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("no image set: call set_image() or set_image_embedding() first")

    # -- prompts -----------------------------------------------------------------
    def _to_input_frame(self, coords: np.ndarray) -> np.ndarray:
        """...x2 XY pixels of the original image -> the model's input frame.

        Scales by ``input_size / original_size``, which is the longest-side
        resize after ``set_image`` and the identity for an embedding restored
        with ``input_size == original_size`` (tiles of the tiled engine).
        """
        (h, w), (newh, neww) = self.original_size, self.input_size
        out = np.array(coords, dtype=np.float64, copy=True)
        out[..., 0] *= neww / w
        out[..., 1] *= newh / h
        return out

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for one prompt set on the current image.

        Args:
            point_coords: Nx2 XY pixels of the original image.
            point_labels: N labels, 1 positive, 0 negative.
            box: (4,) XYXY pixels of the original image.
            mask_input: 1x(4h)x(4w) low-res logits from a previous call.
            multimask_output: three candidate masks instead of one.
            return_logits: masks as float logits instead of bool.

        Returns:
            masks CxHxW (bool, or float32 logits), IoU predictions C float32,
            low-res logits Cx(4h)x(4w) float32 (C = 3 or 1; 4h = 256 at 1024).
        """
        self._require_image()
        coords = labels = box_t = mask_t = None
        if point_coords is not None:
            if point_labels is None:
                raise SamModelError("point_labels must be given with point_coords")
            pc = np.asarray(point_coords, dtype=np.float64).reshape(-1, 2)
            pl = np.asarray(point_labels).reshape(-1)
            if len(pl) != len(pc):
                raise SamModelError(f"{len(pc)} points but {len(pl)} labels")
            pc = self._to_input_frame(pc)
            coords = torch.as_tensor(pc, dtype=torch.float32, device=self.device)[None]
            labels = torch.as_tensor(pl.astype(np.int64), device=self.device)[None]
        if box is not None:
            b = self._to_input_frame(np.asarray(box, dtype=np.float64).reshape(-1, 2, 2)[:1])
            b = b.reshape(-1, 4)
            box_t = torch.as_tensor(b, dtype=torch.float32, device=self.device)
        if mask_input is not None:
            m = torch.as_tensor(np.asarray(mask_input), dtype=torch.float32, device=self.device)
            mask_t = m.reshape(1, 1, *m.shape[-2:])
        masks, iou, low_res = self.predict_torch(
            coords, labels, box_t, mask_t, multimask_output, return_logits=return_logits
        )
        return (
            masks[0].detach().cpu().numpy(),
            iou[0].detach().cpu().numpy(),
            low_res[0].detach().cpu().numpy(),
        )

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Predict masks for a batch of B prompt sets (input-frame coordinates).

        Args:
            point_coords: BxNx2 XY in the resized input frame; point_labels: BxN.
            boxes: Bx4 XYXY in the resized input frame.
            mask_input: Bx1x(4h)x(4w) low-res logits.
            multimask_output: C = 3 masks per prompt set instead of 1.
            return_logits: float logits instead of bool masks.

        Returns:
            masks BxCxHxW (original size), IoU BxC, low-res logits BxCx(4h)x(4w).
        """
        self._require_image()
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res, iou = self.model.mask_decoder(
            image_embeddings=self.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res
