"""The widgets' calls into core, each a generator of Progress events.

Widgets build a frozen config and a source (a file path or an array), then run
one of these in a worker thread (see :mod:`napari_sam._widgets.worker`). No
napari and no Qt here: this module is the seam between the GUI and core, and
it is tested without a viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skimage.draw import polygon2mask

from napari_sam._widgets.state import (
    AutomaticConfig,
    Candidates,
    ExportConfig,
    InteractiveConfig,
    PromptSet,
)
from napari_sam.core.automatic.distributed import executor_for
from napari_sam.core.automatic.object_table import to_dataframe
from napari_sam.core.automatic.run import segment_file
from napari_sam.core.io.labels import read_labels, write_labels
from napari_sam.core.io.nd import guess_axes
from napari_sam.core.io.output_check import check_outputs
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.io.sparse_labels import SparseLabels
from napari_sam.core.io.stack_labels import write_stack_labels
from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.prompt.predictor import RasterPredictor
from napari_sam.core.tiling.embed import embed_raster
from napari_sam.core.tiling.window import Window
from napari_sam.core.vector.polygons import vectorize_to_file
from napari_sam.errors import InputError

IN_MEMORY_LIMIT = 8192 * 8192  # labels read back from disk larger than this stay lazy (dask)


# -- interactive ---------------------------------------------------------------------------
def open_prompt_engine(source: Any, model: Any, config: InteractiveConfig) -> Any:
    """A core ``RasterPredictor`` for ``source`` (a path or an (y, x[, bands]) array)."""
    return RasterPredictor(model=model, raster=source, store=config.store or None,
                           model_name=model.model_name,
                           **config.tiling.core_kwargs())


def embed_gen(source: Any, model: Any, config: InteractiveConfig) -> ProgressGen[Any]:
    """Embed every tile of ``source`` into ``config.store`` (resumed when it exists)."""
    if not config.store:
        raise InputError("choose an embeddings store (a folder ending in .zarr) first")
    return (yield from embed_raster(source, config.store, model, device=None,
                                    model_name=model.model_name,
                                    **config.tiling.core_kwargs()))


def polygon_mask(polygon_xy: np.ndarray, height: int, width: int) -> tuple[Any, np.ndarray]:
    """``(Window, mask)``: a polygon (XY pixel centres) filled on its bounding window."""
    lo = np.clip(np.floor(polygon_xy.min(axis=0)).astype(int), 0, [width - 1, height - 1])
    hi = np.clip(np.ceil(polygon_xy.max(axis=0)).astype(int) + 1, lo + 1, [width, height])
    shape = (int(hi[1] - lo[1]), int(hi[0] - lo[0]))
    mask = polygon2mask(shape, (polygon_xy - lo)[:, ::-1])
    return Window(int(lo[1]), int(lo[0]), shape[0], shape[1]), mask


def predict_candidates(engine: Any, prompts: PromptSet, *,
                       multimask: bool = True) -> ProgressGen[Candidates]:
    """Candidate masks for one object's prompts, placed on the tile core picked.

    A polygon adds its filled outline as a mask prompt to its box. With
    ``multimask`` core gives three candidates for a lone click (one otherwise).
    """
    yield Progress("prompt", 0, 1, "embedding and decoding")
    mask_input = None
    if prompts.polygon_xy is not None and len(prompts.polygon_xy) >= 3:
        mask_input = polygon_mask(prompts.polygon_xy, engine.raster.height, engine.raster.width)
    points = prompts.points_xy if len(prompts.points_xy) else None
    labels = prompts.labels if len(prompts.points_xy) else None
    result = engine.predict(points, labels, prompts.box_xyxy, mask_input, coords="pixel",
                            multimask=None if multimask else False)
    yield Progress("prompt", 1, 1, f"{len(result.scores)} candidate(s)")
    return Candidates(masks=np.asarray(result.masks, dtype=bool),
                      scores=np.asarray(result.scores, dtype=np.float64),
                      offset=(int(result.window.y0), int(result.window.x0)))


# -- automatic -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AutomaticResult:
    """Labels ((h, w) uint32: numpy, dask or SparseLabels), the object table, georeference,
    outputs."""

    labels: Any
    table: Any
    georeference: dict
    n_tiles: int
    folder: Path | None = None


def in_memory_labels(height: int, width: int) -> Any:
    """An empty (height, width) uint32 labels array: numpy, or sparse when large."""
    if height * width <= IN_MEMORY_LIMIT:
        return np.zeros((height, width), dtype=np.uint32)
    return SparseLabels((height, width))


def automatic_gen(source: Any, model: Any, config: AutomaticConfig, *,
                  name: str = "labels") -> ProgressGen[AutomaticResult]:
    """Segment the whole raster with core's ``segment_file`` (the CLI's function).

    With ``config.out_dir`` the outputs of ``napari-sam segment`` are written to
    ``out_dir/<name>/`` atomically and the labels are read back (lazily when
    large); else labels stream into an in-memory array (a :class:`SparseLabels`
    above ``IN_MEMORY_LIMIT`` pixels: memory only where objects are, and a
    pyramid to show it). An existing ``config.store`` gives its tiling and bands
    unless the tiling is chosen. Closing the generator (cancel) removes the
    temporary store and any half-written folder. With ``config.scheduler`` the tiles
    are decoded on that running dask.distributed scheduler (the CLI's ``--scheduler``;
    an unreachable one fails the run with its address named, before any work); with
    ``config.workers`` on that many local worker processes, started for the run and
    closed after it (the CLI's ``--workers``).
    """
    raster = open_raster(source)
    labels = None
    sink = None
    if not config.out_dir:
        labels = in_memory_labels(raster.height, raster.width)

        def sink(y0: int, x0: int, window: np.ndarray) -> None:
            labels[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] = window

    # (distributed itself is imported only when a scheduler or workers are used)
    with executor_for(config.scheduler or None, config.workers or None) as executor:
        summary = yield from segment_file(source, config.out_dir or None, model,
                                          config=config.segment, name=name, sink=sink,
                                          embeddings=config.store or None, executor=executor,
                                          overwrite=config.overwrite,
                                          **config.tiling.core_kwargs())
    if summary.outputs is not None:
        labels = read_labels(summary.outputs.labels).to_dask()
        if raster.height * raster.width <= IN_MEMORY_LIMIT:
            labels = np.asarray(labels)
    return AutomaticResult(labels=labels, table=to_dataframe(summary.objects),
                           georeference=raster.georeference(), n_tiles=summary.n_tiles,
                           folder=summary.outputs.folder if summary.outputs else None)


# -- export --------------------------------------------------------------------------------


def export_gen(labels: Any, geo: dict[str, Any], config: ExportConfig, *,
               attributes: Any = None) -> ProgressGen[list[Path]]:
    """Write ``labels`` ((h, w) integer array) and/or its polygons as ``config`` says.

    ``geo``: ``{"transform": [a..f] or None, "crs": WKT or None}``; labels keep
    it (GeoTIFF/zarr), polygons are written in its CRS (pixels without one,
    and always pixels for QuPath). ``attributes``: an object table with an
    ``id`` column joined onto the polygons. Returns the written paths.
    """
    if not config.labels_path and not config.vectors_path:
        raise InputError("export: choose a labels file and/or a polygons file")
    # refuse before any work: a bad second path must not leave the first output written
    check_outputs(config.labels_path, config.vectors_path, vector_format=config.vector_format,
                  overwrite=config.overwrite)
    if len(labels.shape) > 2:
        return (yield from _export_stack(labels, config, axes=geo.get("axes")))
    transform, crs = geo.get("transform"), geo.get("crs")
    written: list[Path] = []
    if config.labels_path:
        yield Progress("labels", 0, 1, Path(config.labels_path).name)
        written.append(write_labels(config.labels_path, labels, transform=transform, crs=crs,
                                    overwrite=config.overwrite))
        yield Progress("labels", 1, 1, Path(config.labels_path).name)
    if config.vectors_path:
        written.append((yield from vectorize_to_file(
            labels, config.vectors_path, fmt=config.vector_format,
            simplify=config.simplify or None, overwrite=config.overwrite,
            attributes=attributes, transform=transform, crs=crs)))
    return [Path(p) for p in written]



def _export_stack(labels: Any, config: ExportConfig, *, axes: str | None
                  ) -> ProgressGen[list[Path]]:
    """Labels of a stack ``(stack..., h, w)``: an OME-Zarr label image, plane by plane.

    ``axes``: one letter per axis (default ``zyx``, ``tzyx``, ...). Polygons are
    2D: a stack's are refused, before anything is written.
    """
    shape = tuple(labels.shape)
    if config.vectors_path:
        raise InputError(f"polygons file {config.vectors_path}: the labels are a stack "
                         f"{shape}; polygons are written for 2D labels only (export the "
                         f"labels as .zarr); nothing was written")
    if Path(config.labels_path).suffix.lower() != ".zarr":
        raise InputError(f"labels file {config.labels_path}: the labels are a stack {shape}; "
                         f"stacks are written as OME-Zarr (.zarr); nothing was written")
    axes = axes or guess_axes(len(shape))
    yield Progress("labels", 0, 1, Path(config.labels_path).name)
    path = write_stack_labels(config.labels_path, labels, axes, overwrite=config.overwrite)
    yield Progress("labels", 1, 1, path.name)
    return [path]
