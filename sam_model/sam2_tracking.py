"""One step of SAM 2.1's memory path: a frame conditioned on earlier frames' memories.

:class:`Sam2Tracker` keeps, per processed frame, its memory (the memory
encoder's map of the frame and its mask), its object pointer and its masks,
and runs a frame the way the reference ``SAM2Base.track_step`` does in eval
mode (one object, memory temporal stride 1, every prompted frame attended):

* a first prompted frame uses ``no_mem_embed`` instead of memories;
* other frames attend (memory attention) to every prompted frame (temporal
  slot 0) and to the ``num_maskmem - 1`` frames just before them in the
  tracking direction (slots 1..6), plus the object pointers of prompted frames
  not ahead of them and of up to 15 frames just before them, each pointer split
  into ``C / mem_dim`` tokens with a sine encoding of the signed frame distance;
* the SAM heads give multimask output when at most one point is given (so on
  every frame without prompts), keep the best candidate by predicted IoU, set
  the logits to -1024 where the object score is not positive and mix the
  pointer with ``no_obj_ptr`` there;
* the new memory encodes the 1024-px mask: binarised on prompted frames (the
  video predictor's setting), sigmoid elsewhere, scaled by 20 and shifted by -10.

A mask prompt (:meth:`Sam2Tracker.step_mask`) is taken as the frame's output
the way ``SAM2Base._use_mask_as_output`` does: logits of +-10, the object
pointer from the SAM heads given the mask (on the frame without
``no_mem_embed``), the object score +-10 from whether the mask is empty.

The propagation drivers (``sam2_video``, ``sam2_objects``) add around this step the video
predictor's bfloat16 storage of memories and a bounded memory bank; hole
filling (CUDA only in the reference) is not done.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .sam2_model import Sam2

NO_OBJECT_LOGIT = -1024.0
MEMORY_MASK_SCALE, MEMORY_MASK_BIAS = 20.0, -10.0


@dataclass
class FrameFeatures:
    """A frame through the image encoder: stride-16 map BxCxhxw (no ``no_mem_embed``),
    its sine position encoding 1xCxhxw and the decoder's two high-resolution maps."""

    top: Tensor
    pos: Tensor
    high_res: list[Tensor]


@dataclass
class FrameResult:
    """What a frame leaves: best mask logits Bx1x4hx4w and BxSxS (1024 px), object
    pointer BxC, object-score logits Bx1, memory Bx``mem_dim``xhxw and its encoding.
    A driver may drop the logits (None) once they are given out: later frames read only
    the pointer, the score and the memory."""

    low_res: Tensor | None
    high_res: Tensor | None
    obj_ptr: Tensor
    object_score: Tensor
    memory: Tensor | None
    memory_pos: Tensor | None


def sine_1d(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Nxdim: sines of ``positions / temperature**(2*(k//2)/(dim/2))`` then cosines."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=positions.device)
    scale = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / half)
    angles = positions.unsqueeze(-1) / scale
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def frame_features(model: Sam2, x: Tensor) -> FrameFeatures:
    """Normalised Bx3xSxS frames through ``model``'s image encoder -> :class:`FrameFeatures`
    (computed once per frame; every object tracked on the frame reads them)."""
    maps = model.backbone(x)
    top = maps[-1]
    pos = model.image_encoder.position_encodings([top])[0]
    return FrameFeatures(top=top, pos=pos, high_res=model.project_high_res(maps[:-1]))


class Sam2Tracker:
    """Frames of one object through SAM 2.1's memory path (see the module docstring).

    Args:
        model: a ``Sam2``.
        num_frames: length of the sequence (bounds the pointer look-back).
        max_obj_ptrs: frames whose object pointers a frame may attend to (16).
    """

    def __init__(self, model: Sam2, *, num_frames: int, max_obj_ptrs: int = 16) -> None:
        self.model = model
        self.num_frames = int(num_frames)
        self.max_obj_ptrs = min(self.num_frames, int(max_obj_ptrs))
        self.prompted: dict[int, FrameResult] = {}
        self.tracked: dict[int, FrameResult] = {}

    @torch.no_grad()
    def features(self, x: Tensor) -> FrameFeatures:
        """Normalised Bx3xSxS frames -> their :class:`FrameFeatures`."""
        return frame_features(self.model, x)

    @torch.no_grad()
    def step(self, frame_idx: int, feats: FrameFeatures, *, points: tuple[Tensor, Tensor] | None
             = None, reverse: bool = False, encode_memory: bool = True) -> FrameResult:
        """Run frame ``frame_idx``; ``points``: (BxPx2 XY in the SxS input, BxP labels).

        A frame with points is kept as a prompted frame, others as tracked frames.
        """
        first = points is not None and not self.prompted and frame_idx not in self.tracked
        pix = self._condition(frame_idx, feats, first=first, reverse=reverse)
        n_points = 0 if points is None else points[1].shape[1]
        result = self._heads(pix, feats, points, multimask=n_points <= 1)
        if encode_memory:
            result.memory, result.memory_pos = self._encode(feats, result, points is not None)
        (self.prompted if points is not None else self.tracked)[frame_idx] = result
        return result

    @torch.no_grad()
    def step_mask(self, frame_idx: int, feats: FrameFeatures, mask: Tensor, *,
                  encode_memory: bool = True) -> FrameResult:
        """Prompt frame ``frame_idx`` with a binary mask Bx1xSxS (the input size): the mask
        becomes the frame's output; kept as a prompted frame."""
        m = self.model
        b = mask.shape[0]
        mask = mask.to(feats.top.device, torch.float32)
        high = mask * MEMORY_MASK_SCALE + MEMORY_MASK_BIAS
        s = high.shape[-1]
        low = F.interpolate(high, size=(s // 4, s // 4), mode="bilinear", align_corners=False,
                            antialias=True)
        coords = torch.zeros(b, 1, 2, device=mask.device)
        labels = -torch.ones(b, 1, dtype=torch.int32, device=mask.device)
        dense_in = m.mask_downsample(mask)
        sparse, dense = m.prompt_encoder(points=(coords, labels), boxes=None, masks=dense_in)
        _, _, tokens, obj = m.mask_decoder(
            image_embeddings=feats.top, image_pe=m.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=False, high_res_features=feats.high_res)
        lam = (obj > 0).float()
        ptr = lam * m.obj_ptr_proj(tokens[:, 0]) + (1 - lam) * m.no_obj_ptr
        present = mask.flatten(1).gt(0).any(dim=1, keepdim=True).float()
        ptr = present * ptr + (1 - present) * m.no_obj_ptr
        score = MEMORY_MASK_SCALE * present + MEMORY_MASK_BIAS
        result = FrameResult(low_res=low, high_res=high, obj_ptr=ptr, object_score=score,
                             memory=None, memory_pos=None)
        if encode_memory:
            # the video predictor encodes a prompted frame from its low-resolution output
            up = F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
            mem_in = FrameResult(low_res=low, high_res=up, obj_ptr=ptr, object_score=score,
                                 memory=None, memory_pos=None)
            result.memory, result.memory_pos = self._encode(feats, mem_in, True)
        self.prompted[frame_idx] = result
        return result

    # -- memory conditioning ---------------------------------------------------------
    def _condition(self, frame_idx: int, feats: FrameFeatures, *, first: bool, reverse: bool
                   ) -> Tensor:
        m = self.model
        if first:
            return m.still_image_embedding(feats.top)
        if not self.prompted:
            raise RuntimeError("track from a prompted frame first: no frame has prompts yet")
        b, c, h, w = feats.top.shape
        n_slots = m.config.num_maskmem
        step = 1 if reverse else -1  # towards earlier frames of the tracking direction
        frames = [(0, r) for r in self.prompted.values()]
        for slot in range(1, n_slots):
            frames.append((slot, self.tracked.get(frame_idx + step * (n_slots - slot))))
        tokens, pos = [], []
        for slot, r in frames:
            if r is None or r.memory is None:
                continue
            tokens.append(r.memory.float().flatten(2).transpose(1, 2))
            enc = r.memory_pos.flatten(2).transpose(1, 2) + m.maskmem_tpos_enc[n_slots - slot - 1]
            pos.append(enc.expand(b, -1, -1))
        ptr_tokens = self._pointer_tokens(frame_idx, reverse, b)
        n_ptr = 0
        if ptr_tokens is not None:
            tokens.append(ptr_tokens[0])
            pos.append(ptr_tokens[1])
            n_ptr = ptr_tokens[0].shape[1]
        curr = feats.top.flatten(2).transpose(1, 2)
        curr_pos = feats.pos.flatten(2).transpose(1, 2)
        out = m.memory_attention(curr, torch.cat(tokens, dim=1), curr_pos, torch.cat(pos, dim=1),
                                 num_obj_ptr_tokens=n_ptr)
        return out.transpose(1, 2).reshape(b, c, h, w)

    def _pointer_tokens(self, frame_idx: int, reverse: bool, b: int
                        ) -> tuple[Tensor, Tensor] | None:
        m = self.model
        sign = -1 if reverse else 1
        found = [((frame_idx - t) * sign, r.obj_ptr) for t, r in self.prompted.items()
                 if (t >= frame_idx if reverse else t <= frame_idx)]
        for dt in range(1, self.max_obj_ptrs):
            t = frame_idx - sign * dt
            if t < 0 or t >= self.num_frames:
                break
            r = self.tracked.get(t)
            if r is not None:
                found.append((dt, r.obj_ptr))
        if not found:
            return None
        distances = torch.tensor([d for d, _ in found], device=m.device)
        ptrs = torch.stack([p for _, p in found], dim=0)  # N x B x C
        enc = sine_1d(distances / (self.max_obj_ptrs - 1), m.config.d_model)
        enc = m.obj_ptr_tpos_proj(enc)  # N x mem_dim
        n, c, mem = ptrs.shape[0], ptrs.shape[2], m.config.mem_dim
        split = c // mem
        ptrs = ptrs.reshape(n, b, split, mem).permute(1, 0, 2, 3).reshape(b, n * split, mem)
        enc = enc.repeat_interleave(split, dim=0).unsqueeze(0).expand(b, -1, -1)
        return ptrs, enc

    # -- SAM heads and the new memory -----------------------------------------------------
    def _heads(self, pix: Tensor, feats: FrameFeatures, points, *, multimask: bool
               ) -> FrameResult:
        m = self.model
        b = pix.shape[0]
        if points is None:
            coords = torch.zeros(b, 1, 2, device=pix.device)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=pix.device)
        else:
            coords, labels = points[0].to(pix.device, torch.float32), points[1].to(pix.device)
        sparse, dense = m.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        masks, iou, tokens, obj = m.mask_decoder(
            image_embeddings=pix, image_pe=m.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask, high_res_features=feats.high_res)
        present = obj > 0
        masks = torch.where(present[:, :, None, None], masks, NO_OBJECT_LOGIT).float()
        token = tokens[:, 0]
        if multimask:
            rows = torch.arange(b, device=pix.device)
            best = iou.argmax(dim=-1)
            masks = masks[rows, best].unsqueeze(1)
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        s = m.img_size
        high = F.interpolate(masks, size=(s, s), mode="bilinear", align_corners=False)
        lam = present.float()
        ptr = lam * m.obj_ptr_proj(token) + (1 - lam) * m.no_obj_ptr
        return FrameResult(low_res=masks, high_res=high, obj_ptr=ptr, object_score=obj,
                           memory=None, memory_pos=None)

    def _encode(self, feats: FrameFeatures, result: FrameResult, prompted: bool
                ) -> tuple[Tensor, Tensor]:
        m = self.model
        mask = (result.high_res > 0).float() if prompted else torch.sigmoid(result.high_res)
        mask = mask * MEMORY_MASK_SCALE + MEMORY_MASK_BIAS
        memory, pos = m.memory_encoder(feats.top, mask, skip_mask_sigmoid=True)
        absent = 1.0 - (result.object_score > 0).float()
        memory = memory + absent[..., None, None] * m.no_obj_embed_spatial[..., None, None]
        return memory, pos
