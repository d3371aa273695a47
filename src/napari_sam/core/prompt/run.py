"""``napari-sam prompt`` as functions: one mask per object prompt, written like ``segment``.

Each object (see :mod:`napari_sam.core.io.prompt_file`) is decoded with the
tiled prompt predictor (:class:`napari_sam.core.prompt.predictor.RasterPredictor`):
the tile holding the prompt with the most margin, or a window centred on it.
The best-scoring candidate is kept, as a bounding-box crop. Labels are the
objects' numbers; where masks overlap, the higher predicted IoU wins the
pixel (as in ``segment``). ``stability_score`` is measured on the
low-resolution logits (mask area at +1 over area at -1). Objects whose
prompt lies on nodata get no pixel and no row.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_sam.core import progress as progress_mod
from napari_sam.core.automatic.candidates import Candidate
from napari_sam.core.automatic.paint_labels import LabelPainter
from napari_sam.core.automatic.run import SegmentSummary, check_inputs, output_folder
from napari_sam.core.io.atomic import check_writable
from napari_sam.core.io.outputs import is_zarr_input, write_segmentation
from napari_sam.core.io.prompt_file import read_prompts
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.models import load_model
from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.prompt.predictor import RasterPredictor
from napari_sam.core.tiling.window import mask_box
from sam_model import DEFAULT_MODEL


class _Result:
    def __init__(self, objects):
        self.objects = objects


def _stability(logits: np.ndarray) -> float:
    high = int((logits > 1.0).sum())
    low = int((logits > -1.0).sum())
    return float(high / low) if low else 0.0


def prompt_file(
    source,
    prompts: str | os.PathLike,
    out_dir: str | os.PathLike,
    model,
    *,
    embeddings: str | os.PathLike | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    scale: int | None = None,
    bands: Sequence[int] | None = None,
    overwrite: bool = False,
    model_name: str | None = None,
    zoom_limit: int | str | None = "auto",
) -> ProgressGen[SegmentSummary]:
    """Segment the objects prompted in ``prompts`` on ``source`` into ``out_dir/<stem>/``."""
    start = time.perf_counter()
    raster = open_raster(source)
    folder = check_writable(output_folder(source, out_dir), overwrite)
    predictor = RasterPredictor(model=model, raster=raster, store=embeddings, tile_size=tile_size,
                                overlap=overlap, scale=scale, bands=bands, model_name=model_name,
                                zoom_limit=zoom_limit)
    objects = read_prompts(prompts, predictor.raster)
    geo = predictor.raster

    def produce(sink):
        painter = LabelPainter(height=geo.height, width=geo.width, sink=sink)
        found = []
        yield Progress("prompt", 0, len(objects))
        for n, obj in enumerate(objects, start=1):
            res = predictor.predict(points=obj.points, labels=obj.labels, box=obj.box,
                                    coords="pixel")
            i = res.best_index
            if i is not None:
                mask = res.masks[i]
                box = mask_box(mask)
                if box is not None:
                    crop = np.ascontiguousarray(mask[box[1]:box[3], box[0]:box[2]])
                    anchor = obj.points[0] if obj.points is not None else \
                        ((obj.box[0] + obj.box[2]) / 2, (obj.box[1] + obj.box[3]) / 2)
                    found.append((obj.id, Candidate(
                        mask=crop, y0=res.window.y0 + box[1], x0=res.window.x0 + box[0],
                        predicted_iou=float(res.scores[i]),
                        stability_score=_stability(res.low_res_logits[i]),
                        tile=res.context.tile or (-1, -1),
                        point=(float(anchor[0]), float(anchor[1])))))
            yield Progress("prompt", n, len(objects))
        painter.add(found)
        return _Result(painter.finish())

    outputs, result = yield from write_segmentation(geo, folder, produce, overwrite=overwrite,
                                                    zarr_labels=is_zarr_input(source))
    return SegmentSummary(input=Path(str(source)), outputs=outputs, objects=result.objects,
                          n_objects=outputs.n_objects,
                          n_tiles=len(predictor.grid), n_points=len(objects),
                          seconds=time.perf_counter() - start)


def prompt(
    source,
    prompts: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model=DEFAULT_MODEL,
    checkpoint: str | os.PathLike | None = None,
    device: str | None = "auto",
    tile_size: int | None = None,
    overlap: int | None = None,
    scale: int | None = None,
    bands: Sequence[int] | None = None,
    embeddings: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
    zoom_limit: int | str | None = "auto",
) -> SegmentSummary:
    """Script API of ``napari-sam prompt``: masks for the points/boxes in ``prompts``.

    ``model``: a model name or a built ``Sam``. ``zoom_limit``: prompts larger
    than this (model-input px) are decoded downscaled (see
    :class:`napari_sam.core.prompt.predictor.RasterPredictor`; ``"auto"``: the model's
    own). Writes ``out/<stem>/`` as :func:`napari_sam.segment` does; returns
    its summary.
    """
    check_inputs([source], out, overwrite=overwrite)
    name = None
    if isinstance(model, str) or model is None:
        name = model
        model = load_model(model, checkpoint, device=device)
    gen = prompt_file(source, prompts, out, model, embeddings=embeddings, tile_size=tile_size,
                      overlap=overlap, scale=scale, bands=bands, overwrite=overwrite,
                      model_name=name or model.model_name,
                      zoom_limit=zoom_limit)
    return progress_mod.run_with_bar(gen) if progress else progress_mod.run(gen)
