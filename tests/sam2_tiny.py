"""A tiny random SAM 2.1 for the tests that run SAM 2's memory path through core, the
napari widget or the CLI (``from sam2_tiny import tiny_sam2``).

The hiera_tiny layout at a small input side with perturbed random weights
(so that parameters initialised to zero matter), its object-score head biased
to +30 so that the object is never judged absent (random weights would judge
it absent on most planes and give -1024 everywhere, which tests nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

import sam_model
from napari_sam.core.prompt.predictor import RasterPredictor

PRESENT_BIAS = 30.0


def tiny_sam2(img_size: int = 128, *, seed: int = 3):
    """``sam2.1_hiera_tiny`` at ``img_size`` px, perturbed weights, object always present."""
    torch.manual_seed(0)
    model = sam_model.build_sam("sam2.1_hiera_tiny", pretrained=False, img_size=img_size).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.dtype.is_floating_point:
                value.add_(torch.randn(value.shape, generator=gen) * 0.02)
    object_score_head(model).fill_(PRESENT_BIAS)
    return model


def object_score_head(model) -> torch.Tensor:
    """The bias of the object-score head's last layer (one value)."""
    return model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.data


@contextlib.contextmanager
def object_absent(model) -> Iterator[None]:
    """Inside, the model judges the object absent on every tracked plane."""
    head = object_score_head(model)
    head.fill_(-PRESENT_BIAS)
    try:
        yield
    finally:
        head.fill_(PRESENT_BIAS)


def plane_predictors(model, stack):
    """``predictor_for(index)`` as core's propagation asks for it: one RasterPredictor
    per plane ``stack[index[0]]``, made once."""
    made: dict = {}

    def predictor_for(index):
        if index not in made:
            made[index] = RasterPredictor(model=model, raster=stack[index[0]])
        return made[index]
    return predictor_for
