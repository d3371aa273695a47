"""Segmenting a file: the one function behind ``napari-sam segment``, the script API
and the automatic widget.

For each input: open it (bad input fails before any work), make sure its
output folder may be written, embed the tiles that are not in the embedding
store yet (the given ``--embeddings`` store, resumed; else a temporary store
removed afterwards), run the coarse passes of the extra scales
(:mod:`napari_sam.core.automatic.scale_passes`, temporary stores), decode
every tile from the store (here or on a dask cluster) with the coarse passes'
large objects merged in, and write ``DIR/<stem>/`` atomically or stream the
labels into a sink.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_sam.core import progress as progress_mod
from napari_sam.core.automatic.decode import segment_tiles, store_embeddings
from napari_sam.core.automatic.distributed import executor_for
from napari_sam.core.automatic.multiscale import ScaleMerger, ScaleRules, finer_extent
from napari_sam.core.automatic.object_table import ObjectRecord
from napari_sam.core.automatic.paint_labels import Sink
from napari_sam.core.automatic.scale_passes import coarse_passes, whole_limit
from napari_sam.core.automatic.settings import SegmentConfig
from napari_sam.core.io.atomic import check_writable
from napari_sam.core.io.outputs import SegmentOutputs, input_stem, is_zarr_input, write_segmentation
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.models import load_model
from napari_sam.core.progress import ProgressGen
from napari_sam.core.tiling.embed import embed_raster
from napari_sam.core.tiling.store import EmbeddingStore
from napari_sam.errors import InputError
from sam_model import DEFAULT_MODEL, automatic_thresholds


@dataclass(frozen=True)
class SegmentSummary:
    """One input's run: what was found, where the outputs are, what it cost.

    ``input``: the input's path (None for an array); ``outputs``: the written
    folder (None when the labels went to a sink only); ``objects``: one record
    per label id.
    """

    input: Path | None
    outputs: SegmentOutputs | None
    objects: list[ObjectRecord]
    n_objects: int
    n_tiles: int
    n_points: int
    seconds: float
    n_decoded: int | None = None

    def line(self) -> str:
        where = f" -> {self.outputs.folder}" if self.outputs is not None else ""
        return (f"{self.input}: {self.n_objects} objects in {self.seconds:.1f} s "
                f"({self.n_tiles} tiles){where}")


def output_folder(source, out_dir: str | os.PathLike) -> Path:
    """``DIR/<stem>`` for an input path."""
    return Path(out_dir) / input_stem(source)


def _input_path(source) -> Path | None:
    return Path(source) if isinstance(source, (str, os.PathLike)) else None


def segment_file(
    source,
    out_dir: str | os.PathLike | None,
    model,
    *,
    config: SegmentConfig | None = None,
    name: str | None = None,
    sink: Sink | None = None,
    embeddings: str | os.PathLike | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    scale: int | None = None,
    bands: Sequence[int] | None = None,
    batch_size: int | None = None,
    executor=None,
    overwrite: bool = False,
) -> ProgressGen[SegmentSummary]:
    """Segment one raster; yield Progress, return a SegmentSummary.

    The one way to segment a file: ``napari-sam segment``, :func:`segment` and
    the automatic widget call it. ``source``: a path or an array (anything
    ``open_raster`` opens). Outputs: with ``out_dir``, ``out_dir/<name>/``
    (``name`` defaults to the input's stem) written atomically; without it the
    labels stream into ``sink(y0, x0, labels)`` only. ``model``: a built
    ``sam_model.Sam`` (already on its device). ``embeddings``: an embedding
    store to use and complete; an existing store's tiling and bands are used
    where ``tile_size``/``overlap``/``scale`` and ``bands`` are not given.
    None embeds into a temporary store (beside the outputs, else in the
    system's temporary folder), removed afterwards, also when the run is
    closed early (cancel). ``executor``: a ``DaskExecutor`` to decode tiles on a
    cluster, None to decode here.
    """
    if (out_dir is None) == (sink is None):
        raise ValueError("segment_file writes either to out_dir or to a sink")
    start = time.perf_counter()
    config = config or SegmentConfig()
    raster = open_raster(source)
    if embeddings is not None and Path(embeddings).exists():
        # an existing store's tiling and bands are the defaults: no need to repeat them
        stored = EmbeddingStore.open(embeddings, mode="r").settings
        if tile_size is None and overlap is None and scale is None:
            tile_size, overlap, scale = (stored.grid.tile_size, stored.grid.overlap,
                                         stored.grid.scale)
        if bands is None:
            bands = stored.source.get("bands")
    raster = raster.select_bands(bands if bands is not None else raster.default_bands())
    folder = None
    if out_dir is not None:
        folder = Path(out_dir) / name if name else output_folder(source, out_dir)
        folder = check_writable(folder, overwrite)
    scratch = None  # a folder this run makes for a temporary store, removed at the end
    made_parent = False
    if embeddings is not None:
        store_path = Path(embeddings)
        made_parent = not store_path.parent.exists()
        store_path.parent.mkdir(parents=True, exist_ok=True)
    elif folder is not None:
        made_parent = not folder.parent.exists()
        folder.parent.mkdir(parents=True, exist_ok=True)
        store_path = folder.parent / f".{folder.name}.embeddings-{uuid.uuid4().hex[:8]}.zarr"
    else:
        scratch = Path(tempfile.mkdtemp(prefix="napari-sam-"))
        store_path = scratch / "embeddings.zarr"
    finished = False
    try:
        store = yield from embed_raster(raster, store_path, model, tile_size=tile_size,
                                        overlap=overlap, scale=scale, batch_size=batch_size,
                                        device=None)
        coarse, coarse_decoded, scales = yield from coarse_passes(
            raster, store, model, config=config, work_dir=store_path.parent,
            model_name=getattr(model, "model_name", None), batch_size=batch_size,
            executor=executor)

        # with refined coarse masks, a full-resolution mask does not replace a coarse object
        # longer than the model segments whole (see multiscale.too_long_for_finer)
        fine_rules = ScaleRules(same_extent=finer_extent(
            whole_limit(config, getattr(model, "model_name", None)), store.grid.scale))

        def produce(to):
            return (yield from segment_tiles(raster, store.grid, store_embeddings(store), model,
                                             config=config, sink=to, executor=executor,
                                             coarse=ScaleMerger(coarse, fine_rules),
                                             scales=scales,
                                             coarse_decoded=coarse_decoded))

        outputs = None
        if folder is None:
            result = yield from produce(sink)
        else:
            outputs, result = yield from write_segmentation(
                raster, folder, produce, overwrite=overwrite, zarr_labels=is_zarr_input(source))
        finished = True
    finally:
        if embeddings is None:
            shutil.rmtree(scratch if scratch is not None else store_path, ignore_errors=True)
        if made_parent and not finished:
            with contextlib.suppress(OSError):  # only an empty folder this run made
                store_path.parent.rmdir()
    return SegmentSummary(input=_input_path(source), outputs=outputs, objects=result.objects,
                          n_objects=len(result.objects), n_tiles=result.n_tiles,
                          n_points=result.n_points, seconds=time.perf_counter() - start,
                          n_decoded=getattr(result, "n_decoded", None))


def check_inputs(inputs: Sequence, out_dir, *, embeddings=None, overwrite: bool = False) -> None:
    """Refuse, before any work: no input, missing inputs, two inputs with one stem,
    existing outputs without ``overwrite``, one store for several inputs."""
    if not inputs:
        raise InputError("no INPUT given")
    if embeddings is not None and len(inputs) > 1:
        raise InputError(f"{embeddings}: one embedding store serves one INPUT, got {len(inputs)}")
    seen: dict[str, object] = {}
    for src in inputs:
        if isinstance(src, (str, os.PathLike)) and not Path(src).exists():
            raise InputError(f"{src}: no such file or folder")
        stem = input_stem(src)
        if stem in seen:
            raise InputError(f"{src}: same output name '{stem}' as {seen[stem]}")
        seen[stem] = src
        check_writable(output_folder(src, out_dir), overwrite)


def segment(
    inputs,
    out: str | os.PathLike,
    *,
    model=DEFAULT_MODEL,
    checkpoint: str | os.PathLike | None = None,
    device: str | None = "auto",
    batch_size: int | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    scale: int | None = None,
    bands: Sequence[int] | None = None,
    embeddings: str | os.PathLike | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    report: Callable[[SegmentSummary], Any] | None = None,
    **options,
) -> list[SegmentSummary]:
    """Script API of ``napari-sam segment``: automatic segmentation of whole rasters.

    ``inputs``: a path or a list of paths. ``model``: a model name or a built
    ``Sam``; ``checkpoint``: an official weights file. ``options``: the fields
    of :class:`SegmentConfig` (``points_per_side``, ``pred_iou_thresh``,
    ``stability_score_thresh``, ``box_nms_thresh``, ``min_area``,
    ``max_area``, ``stitch_seams``, ...). ``scheduler``: a dask scheduler address;
    ``workers``: start that many local dask workers. ``report`` is called
    with each input's summary as soon as it is done. Returns one summary per
    input.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    try:
        SegmentConfig(**options)  # bad options fail before the model loads
    except (TypeError, ValueError) as exc:
        raise InputError(f"segment: {exc}") from exc
    check_inputs(inputs, out, embeddings=embeddings, overwrite=overwrite)
    if isinstance(model, str) or model is None:
        model = load_model(model, checkpoint, device=device)
    config = config_for_model(model.model_name, options)
    drain = progress_mod.run_with_bar if progress else progress_mod.run
    summaries = []
    with executor_for(scheduler, workers) as executor:
        for src in inputs:
            gen = segment_file(src, out, model, embeddings=embeddings, tile_size=tile_size,
                               overlap=overlap, scale=scale, bands=bands, batch_size=batch_size,
                               config=config, executor=executor, overwrite=overwrite)
            summaries.append(drain(gen))
            if report is not None:
                report(summaries[-1])
    return summaries


def config_for_model(model_name: str | None, options: dict) -> SegmentConfig:
    """A SegmentConfig from ``options``, with the mask thresholds suited to the
    model (``sam_model.automatic_thresholds``) where ``options`` leaves them out."""
    return SegmentConfig(**{**automatic_thresholds(model_name), **options})
