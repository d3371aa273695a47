"""Building the model a command asks for, with bad choices reported as InputError."""

from __future__ import annotations

import os

import sam_model
from napari_sam.core.device import pick_device
from napari_sam.errors import InputError
from sam_model import DEFAULT_MODEL
from sam_model.checkpoint import architecture_of, read_state_dict


def load_model(name: str | None = None, checkpoint: str | os.PathLike | None = None, *,
               device: str | None = "auto"):
    """A ``sam_model.Sam`` in eval mode on ``device`` (its ``model_name`` set by ``build_sam``).

    ``name``: a registered model (``sam_model.list_models()``); with only a
    ``checkpoint``, the architecture is recognised from the file's keys and
    shapes; with neither, ``sam_model.DEFAULT_MODEL``.
    """
    try:
        if name is None and checkpoint is not None:
            name = architecture_of(read_state_dict(checkpoint))
            if name is None:
                raise InputError(f"{checkpoint}: cannot tell which model this checkpoint is "
                                 f"for; give --model (one of {', '.join(sam_model.list_models())})")
        name = name or DEFAULT_MODEL
        if name not in sam_model.list_models():
            raise InputError(f"--model {name}: unknown model; choose one of "
                             f"{', '.join(sam_model.list_models())}")
        model = sam_model.build_sam(name, checkpoint, device=pick_device(device))
    except sam_model.SamModelError as exc:
        raise InputError(str(exc)) from exc
    return model.eval()
