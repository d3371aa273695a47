"""Several objects through a sequence at once, as the official video predictor does.

:class:`Sam2ObjectsPropagator` holds one :class:`~.sam2_video.Sam2VideoPropagator`
per object (its own prompted frame, memories and object pointers: objects never
read each other's memory) and runs every frame through the image encoder once
for all of them. What the official ``SAM2VideoPredictor`` does with several
objects and is done here:

* each object is prompted on one frame (points, a box or a mask), which may
  differ from object to object; its prompted frame is decoded without memory,
  as SAM does;
* a pass starts at the earliest prompted frame (``origin``) and visits every
  frame from there to the end (``reverse``: to frame 0), that frame included;
  on each frame an object prompted there gives its prompt's output again, and
  every other object is tracked, including an object whose own prompted frame
  lies ahead in the pass (it is then conditioned on that frame's memory alone);
* the origin comes out of both passes; an object prompted on a later frame is
  tracked there by each, and the later output is the official one (the later
  pass has overwritten the object's memory there, as in the reference).

Each object's bank is bounded as the single-object driver's (at most about
``2 x 15`` frames' results per object, full-resolution logits never kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from .sam2_model import Sam2
from .sam2_video import Encoded, PropagatedFrame, Sam2VideoPropagator, encode_frame


@dataclass(frozen=True)
class FrameObjects:
    """One frame's outputs in a pass, by object id (each a :class:`PropagatedFrame`)."""

    index: int
    objects: dict[int, PropagatedFrame]
    reverse: bool

    def labels(self) -> np.ndarray:
        """HxW uint32: the id of the object whose logit is highest at a pixel among those
        judged present with a positive logit there (0 elsewhere; ties to the first id)."""
        ids = [i for i, out in self.objects.items() if out.present]
        first = next(iter(self.objects.values()))
        if not ids:
            return np.zeros(first.logits.shape, np.uint32)
        stack = np.stack([self.objects[i].logits for i in ids])
        best = stack.argmax(axis=0)
        found = np.asarray(ids, np.uint32)[best]
        return np.where(stack.max(axis=0) > 0, found, 0).astype(np.uint32)


class Sam2ObjectsPropagator:
    """Objects (by integer id) through ``num_frames`` frames given by ``frame(i)``.

    Args:
        model: a ``Sam2``.
        frame: callable giving frame ``i`` as an HxWx3 image; called once per frame a
            pass visits (and once per prompted frame), never kept beyond the current one.
        num_frames: length of the sequence.
        max_obj_ptrs: frames whose object pointers a frame may attend to (official 16).
    """

    def __init__(self, model: Sam2, *, frame: Callable[[int], np.ndarray], num_frames: int,
                 max_obj_ptrs: int = 16) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        self.model = model
        self.frame = frame
        self.num_frames = int(num_frames)
        self.max_obj_ptrs = max_obj_ptrs
        self.objects: dict[int, Sam2VideoPropagator] = {}
        self._cached: tuple[int, Encoded] | None = None
        self._started = False
        self.encoded_frames = 0  # image encoder runs so far (one per frame visited)

    def _features(self, index: int) -> Encoded:
        """Frame ``index`` through the image encoder, once for all objects (the last
        frame's features are kept, as the official predictor caches them)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} outside 0..{self.num_frames - 1}")
        if self._cached is None or self._cached[0] != index:
            self._cached = (index, encode_frame(self.model, self.frame(index)))
            self.encoded_frames += 1
        return self._cached[1]

    @torch.no_grad()
    def add_prompt(self, index: int, obj_id: int, *, points=None, labels=None, box=None,
                   mask: np.ndarray | None = None) -> PropagatedFrame:
        """Prompt object ``obj_id`` on frame ``index`` (see
        :meth:`Sam2VideoPropagator.add_prompt`); one prompted frame per object, all
        objects prompted before the first pass. Returns the object's output there."""
        if self._started:
            raise RuntimeError("prompt every object before propagating")
        if obj_id in self.objects:
            raise ValueError(f"object {obj_id} already has a prompted frame")
        prop = Sam2VideoPropagator(self.model, features=self._features,
                                   num_frames=self.num_frames, max_obj_ptrs=self.max_obj_ptrs)
        out = prop.add_prompt(index, points=points, labels=labels, box=box, mask=mask)
        self.objects[int(obj_id)] = prop
        return out

    @property
    def origin(self) -> int:
        """Where passes start: the earliest prompted frame."""
        if not self.objects:
            raise RuntimeError("prompt an object first (add_prompt)")
        return min(p.start for p in self.objects.values())

    @torch.no_grad()
    def propagate(self, *, reverse: bool = False, max_frames: int | None = None
                  ) -> Iterator[FrameObjects]:
        """Frames from :attr:`origin` (included) to the end, or to frame 0 with
        ``reverse``, at most ``max_frames`` beyond the origin; stopping the iteration
        stops the tracking."""
        origin = self.origin
        self._started = True
        step = -1 if reverse else 1
        limit = self.num_frames if max_frames is None else int(max_frames)
        index = origin
        try:
            while 0 <= index < self.num_frames and abs(index - origin) <= limit:
                outs: dict[int, PropagatedFrame] = {}
                for obj_id, prop in self.objects.items():
                    if prop.start == index:
                        outs[obj_id] = replace(prop.prompt_output, reverse=reverse)
                    else:
                        outs[obj_id] = prop.track(index, self._features(index),
                                                  reverse=reverse, origin=origin)
                yield FrameObjects(index=index, objects=outs, reverse=reverse)
                index += step
        finally:
            for prop in self.objects.values():
                prop.end_pass(reverse=reverse, origin=origin)
            self._cached = None

    @property
    def stored_frames(self) -> dict[int, int]:
        """Per object, the frames whose results (memories, pointers) are held now."""
        return {obj_id: p.stored_frames for obj_id, p in self.objects.items()}

    @property
    def stored_bytes(self) -> int:
        """Bytes of the tensors every object's held results keep."""
        return sum(p.stored_bytes for p in self.objects.values())
