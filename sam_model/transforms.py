"""Resizing images and prompts to the model's input frame, and image conversion.

The model sees images whose longest side is ``img_size`` (1024). A uint8
image is resized as the reference implementation resizes it (torchvision's
``resize`` on a PIL image): Pillow's bilinear filter, which widens with the
downscale factor (antialiasing) and works in fixed point, one axis at a time
(horizontal pass, rounded to uint8, then vertical pass). So the same weights
give the reference's embeddings. ``apply_image_torch`` (batched float
tensors) uses torch's antialiased bilinear interpolation, as the reference's
does; it may differ from ``apply_image`` by about one grey level.

``to_rgb_uint8`` turns other images into HWC uint8 RGB by this rule:

* shape: HxW and HxWx1 (gray) are repeated to three channels; HxWx2 (gray +
  alpha) keeps the gray; HxWx3 is RGB; HxWx4 (RGBA) drops the alpha channel.
  Anything else is refused.
* dtype: uint8 as is; bool as 0/255; float images whose finite values all lie
  in [0, 1] are multiplied by 255; every other integer or float image (for
  example uint16) is stretched linearly from its minimum to its maximum
  (finite values, all channels together, so colours keep their balance) to
  0..255; NaN and infinities become 0; a constant image becomes 0. Complex
  and non-numeric images are refused. Values are rounded half to even.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ImageFormatError


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Convert an image to HWC uint8 RGB by the module's documented rule."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ImageFormatError(
            f"expected an HxW, HxWx1, HxWx2, HxWx3 or HxWx4 image, got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageFormatError(f"the image is empty (shape {image.shape})")
    channels = image.shape[2]
    if channels in (1, 2):
        image = np.repeat(image[:, :, :1], 3, axis=2)
    elif channels == 4:
        image = image[:, :, :3]
    return _to_uint8(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    kind = image.dtype.kind
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if kind == "b":
        return image.astype(np.uint8) * np.uint8(255)
    if kind not in "uif":
        raise ImageFormatError(f"unsupported image dtype {image.dtype} (use integers or floats)")
    values = image.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(image.shape, np.uint8)
    lo, hi = values[finite].min(), values[finite].max()
    if kind == "f" and lo >= 0.0 and hi <= 1.0:
        scaled = values * 255.0
    elif hi > lo:
        scaled = (values - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(values)
    scaled[~finite] = 0.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def resize_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWxC uint8 image (C = 1 or 3) to ``size`` (h, w) with Pillow's bilinear.

    Returns a new HxWxC uint8 array (h, w = ``size``).
    """
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ImageFormatError(f"resize_uint8 expects an HxWxC uint8 image with C in (1, 3), "
                               f"got {image.dtype} {image.shape}")
    h, w = int(size[0]), int(size[1])
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    out = np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR))
    return out.reshape(h, w, image.shape[2]).copy()


class ResizeLongestSide:
    """Scale images and coordinates so the longest side becomes ``target_length``."""

    def __init__(self, target_length: int) -> None:
        self.target_length = int(target_length)

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        """(h, w) after scaling (oldh, oldw) so that max(h, w) == long_side_length."""
        scale = long_side_length * 1.0 / max(oldh, oldw)
        return int(oldh * scale + 0.5), int(oldw * scale + 0.5)

    def _shape(self, size: tuple[int, ...]) -> tuple[int, int]:
        return self.get_preprocess_shape(int(size[0]), int(size[1]), self.target_length)

    # numpy ------------------------------------------------------------------
    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HxWxC uint8 -> hxwxC uint8 with max(h, w) == target_length."""
        return resize_uint8(image, self._shape(image.shape[:2]))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """...x2 XY pixel coordinates of the original image -> resized frame (float64)."""
        h, w = int(original_size[0]), int(original_size[1])
        newh, neww = self._shape((h, w))
        out = np.array(coords, dtype=np.float64, copy=True)
        out[..., 0] = out[..., 0] * (neww / w)
        out[..., 1] = out[..., 1] * (newh / h)
        return out

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """Bx4 XYXY boxes of the original image -> resized frame."""
        boxes = np.asarray(boxes)
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    # torch ------------------------------------------------------------------
    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """Bx3xHxW float -> Bx3xhxw float (antialiased bilinear, not rounded)."""
        size = self._shape(image.shape[-2:])
        return F.interpolate(image, size, mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(
        self, coords: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """...x2 XY coordinates -> resized frame (float)."""
        h, w = int(original_size[0]), int(original_size[1])
        newh, neww = self._shape((h, w))
        out = coords.clone().to(torch.float)
        out[..., 0] = out[..., 0] * (neww / w)
        out[..., 1] = out[..., 1] * (newh / h)
        return out

    def apply_boxes_torch(
        self, boxes: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """Bx4 XYXY boxes -> resized frame."""
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)
