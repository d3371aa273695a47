"""Propagate one object through a sequence of frames with SAM 2.1's memory.

:class:`Sam2VideoPropagator` follows the official video predictor for one
object: prompts (points, a box, or a mask) on one frame make it a
conditioning frame; :meth:`~Sam2VideoPropagator.propagate` then tracks forward
or backward from it, one frame at a time (:class:`~.sam2_tracking.Sam2Tracker`),
and yields each frame's mask logits at the frame's own size. Frames are asked
for lazily (``frame(i)``: an HxWx3 image, resized to the model's square input
as the official loader does) and never kept.

What the official predictor does and is done here:

* a box is two points labelled 2 and 3 placed before the clicks; prompts are
  scaled by S/W and S/H; a mask is resized to SxS (antialiased bilinear,
  >= 0.5) and taken as the frame's output;
* the memory of a prompted frame is encoded from its low-resolution logits
  upsampled to SxS and binarised; memories are stored in bfloat16;
* the output of a frame is its low-resolution logits resized (bilinear) to HxW;
* a backward pass after a forward pass (from the same prompted frame) sees
  the forward pass's frames next to the prompted one, as the official state does.

The memory bank is bounded: a tracked frame's result is dropped once no later
frame in that direction can reach it (``keep = max(num_maskmem - 1,
max_obj_ptrs - 1)`` frames behind, 15), except the frames within
:meth:`~Sam2VideoPropagator.reach` of where the pass started (``keep - 1``
when it started at the prompted frame, ``keep`` when at another object's,
see ``sam2_objects``), which the pass the other way reads; at most
``2 * keep (+ 1)`` frames' results are held (bfloat16 memories, pointers and
scores, one memory position encoding for all frames: it is the same on every
frame); full-resolution logits are not kept at all. So memory stays flat
however long the sequence. :meth:`~Sam2VideoPropagator.track` runs one frame
of a pass given its features, so that the several-object driver
(``sam2_objects``) encodes each frame once for all objects. Hole filling
(``fill_hole_area``, a CUDA extension in the reference) is not done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .sam2_model import Sam2
from .sam2_tracking import FrameFeatures, FrameResult, Sam2Tracker, frame_features
from .transforms import to_rgb_uint8

MEMORY_DTYPE = torch.bfloat16  # how the official video predictor stores memories
Encoded = tuple[FrameFeatures, tuple[int, int]]  # a frame's features and its (h, w)


@dataclass(frozen=True)
class PropagatedFrame:
    """One frame's output: ``logits`` HxW float32 at the frame's size (object where > 0),
    the object-score logit (the object is judged absent where it is <= 0) and the pass."""

    index: int
    logits: np.ndarray
    object_score: float
    reverse: bool

    @property
    def mask(self) -> np.ndarray:
        return self.logits > 0

    @property
    def present(self) -> bool:
        return self.object_score > 0


class Sam2VideoPropagator:
    """One object through ``num_frames`` frames given by ``frame(i)`` (HxWx3 images).

    Args:
        model: a ``Sam2``.
        frame: callable giving frame ``i`` (0 <= i < num_frames) as an HxWx3 image (uint8
            RGB, or anything ``to_rgb_uint8`` accepts); called once per frame visited.
        num_frames: length of the sequence.
        max_obj_ptrs: frames whose object pointers a frame may attend to (official 16).
        features: instead of ``frame``, a callable giving frame ``i`` already through the
            image encoder (``(FrameFeatures, (h, w))``, see :func:`encode_frame`); the
            several-object driver (``sam2_objects``) shares one frame's features this way.
    """

    def __init__(self, model: Sam2, *, frame: Callable[[int], np.ndarray] | None = None,
                 num_frames: int, max_obj_ptrs: int = 16,
                 features: Callable[[int], Encoded] | None = None) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        if (frame is None) == (features is None):
            raise ValueError("give frame or features, not both")
        self.model = model
        self.frame = frame
        self._encoded = features
        self.num_frames = int(num_frames)
        self.tracker = Sam2Tracker(model, num_frames=num_frames, max_obj_ptrs=max_obj_ptrs)
        self.keep = max(model.config.num_maskmem - 1, self.tracker.max_obj_ptrs - 1)
        self.start: int | None = None
        self.prompt_output: PropagatedFrame | None = None
        self._memory_pos: torch.Tensor | None = None

    # -- frames ---------------------------------------------------------------------------
    def _features(self, index: int) -> Encoded:
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} outside 0..{self.num_frames - 1}")
        if self._encoded is not None:
            return self._encoded(index)
        return encode_frame(self.model, self.frame(index))

    @staticmethod
    def _output(index: int, result: FrameResult, size: tuple[int, int],
                reverse: bool) -> PropagatedFrame:
        logits = result.low_res
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return PropagatedFrame(index=index, logits=logits[0, 0].float().cpu().numpy(),
                               object_score=float(result.object_score.reshape(-1)[0]),
                               reverse=reverse)

    def _slim(self, result: FrameResult) -> FrameResult:
        """What later frames read of a result: pointer, score, bfloat16 memory, and the
        memory's position encoding, which is the same on every frame: one tensor is held
        for all of them (as the official state caches it)."""
        memory = None if result.memory is None else result.memory.to(MEMORY_DTYPE)
        pos = result.memory_pos
        if pos is not None:
            if self._memory_pos is None or not torch.equal(self._memory_pos, pos):
                self._memory_pos = pos
            pos = self._memory_pos
        return replace(result, high_res=None, low_res=None, memory=memory, memory_pos=pos)

    # -- prompts ----------------------------------------------------------------------------
    @torch.no_grad()
    def add_prompt(self, index: int, *, points=None, labels=None, box=None,
                   mask: np.ndarray | None = None) -> PropagatedFrame:
        """Prompt frame ``index``: ``points`` Px2 XY frame pixels with ``labels`` (1/0),
        ``box`` XYXY frame pixels, or ``mask`` HxW bool (alone). Returns its output."""
        if self.start is not None:
            raise RuntimeError("this propagator already has a prompted frame")
        if mask is not None and (points is not None or box is not None):
            raise ValueError("give points/box or a mask, not both")
        if mask is None and points is None and box is None:
            raise ValueError("give points, a box or a mask")
        feats, (h, w) = self._features(index)
        s = self.model.img_size
        device = self.model.device
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (h, w):
                raise ValueError(f"mask of shape {mask.shape} for a frame of {(h, w)}")
            m = torch.from_numpy(mask)[None, None].float().to(device)
            if (h, w) != (s, s):
                m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False,
                                  antialias=True)
                m = (m >= 0.5).float()
            result = self.tracker.step_mask(index, feats, m)
        else:
            coords = np.zeros((0, 2), np.float32)
            labs = np.zeros((0,), np.int32)
            if box is not None:
                coords = np.asarray(box, np.float32).reshape(2, 2)
                labs = np.array([2, 3], np.int32)
            if points is not None:
                coords = np.concatenate([coords, np.asarray(points, np.float32).reshape(-1, 2)])
                labs = np.concatenate([labs, np.asarray(labels, np.int32).reshape(-1)])
            xy = torch.from_numpy(coords)[None] / torch.tensor([w, h], dtype=torch.float32) * s
            result = self.tracker.step(index, feats, points=(xy.to(device),
                                                             torch.from_numpy(labs)[None]))
        self.start = index
        self.prompt_output = self._output(index, result, (h, w), reverse=False)
        self.tracker.prompted[index] = self._slim(result)
        return self.prompt_output

    # -- tracking ---------------------------------------------------------------------------
    @torch.no_grad()
    def propagate(self, *, reverse: bool = False, max_frames: int | None = None
                  ) -> Iterator[PropagatedFrame]:
        """Frames after (``reverse``: before) the prompted one, nearest first, up to
        ``max_frames`` of them; stopping the iteration stops the tracking."""
        if self.start is None:
            raise RuntimeError("prompt a frame first (add_prompt)")
        origin = self.start
        step = -1 if reverse else 1
        limit = self.num_frames if max_frames is None else int(max_frames)
        index = origin + step
        try:
            while 0 <= index < self.num_frames and abs(index - origin) <= limit:
                yield self.track(index, self._features(index), reverse=reverse, origin=origin)
                index += step
        finally:  # the pass is over: keep only what a pass the other way reads
            self.end_pass(reverse=reverse, origin=origin)

    @torch.no_grad()
    def track(self, index: int, encoded: Encoded, *, reverse: bool, origin: int
              ) -> PropagatedFrame:
        """Track the object on frame ``index`` (not its prompted frame) in a pass that
        started at frame ``origin``; ``encoded``: the frame through the image encoder."""
        if self.start is None:
            raise RuntimeError("prompt a frame first (add_prompt)")
        feats, size = encoded
        result = self.tracker.step(index, feats, reverse=reverse)
        out = self._output(index, result, size, reverse)
        self.tracker.tracked[index] = self._slim(result)
        self._forget(index - (-1 if reverse else 1) * self.keep, origin)
        return out

    def end_pass(self, *, reverse: bool, origin: int) -> None:
        """A pass from ``origin`` is over: drop its frames a pass the other way never reads."""
        step = -1 if reverse else 1
        for t in [t for t in self.tracker.tracked if (t - origin) * step > 0]:
            self._forget(t, origin)

    def reach(self, origin: int) -> int:
        """How far from a pass's start ``origin`` the other pass reads tracked frames: its
        first tracked frame reads ``keep`` frames, or ``keep - 1`` when ``origin`` is this
        object's prompted frame (the first tracked frame is then one further out)."""
        return self.keep - 1 if origin == self.start else self.keep

    def _forget(self, index: int, origin: int) -> None:
        """Drop a tracked frame nothing will read again: behind the current frame by
        ``keep`` frames and farther than :meth:`reach` from the pass's start."""
        if abs(index - origin) > self.reach(origin):
            self.tracker.tracked.pop(index, None)

    @property
    def stored_frames(self) -> int:
        """Frames whose results (memories, pointers) are held now."""
        return len(self.tracker.prompted) + len(self.tracker.tracked)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the tensors the held results keep (a tensor shared by several counted
        once)."""
        seen: dict[int, int] = {}
        for result in (*self.tracker.prompted.values(), *self.tracker.tracked.values()):
            for t in (result.low_res, result.high_res, result.obj_ptr, result.object_score,
                      result.memory, result.memory_pos):
                if t is not None:
                    seen[id(t)] = t.numel() * t.element_size()
        return sum(seen.values())


def encode_frame(model: Sam2, image: np.ndarray) -> Encoded:
    """An HxWx3 frame through the image encoder at the model's square input (resized as
    the official loader does): ``(FrameFeatures, (h, w))``."""
    image = to_rgb_uint8(np.asarray(image))
    size = (int(image.shape[0]), int(image.shape[1]))
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)
    x = x.to(model.device)[None]
    s = model.img_size
    if tuple(x.shape[-2:]) != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        return frame_features(model, model.normalize(x)), size
