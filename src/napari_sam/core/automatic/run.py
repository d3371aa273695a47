"""``napari-sam segment`` as functions: embeddings (cached or temporary), tiled generation, outputs.

For each input: open it (bad input fails before any work), make sure its
output folder may be written, embed the tiles that are not in the embedding
store yet (the given ``--embeddings`` store, resumed; else a temporary store
beside the outputs, removed afterwards), decode every tile from the store
(here or on a dask cluster), and write ``DIR/<stem>/`` atomically.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_sam.core.automatic.decode import (
    SegmentConfig,
    SegmentResult,
    segment_tiles,
    store_embeddings,
)
from napari_sam.core.io.atomic import check_writable
from napari_sam.core.io.outputs import SegmentOutputs, input_stem, is_zarr_input, write_segmentation
from napari_sam.core.progress import ProgressGen
from napari_sam.errors import InputError


@dataclass(frozen=True)
class SegmentSummary:
    """One input's run: where the outputs are, what was found, what it cost."""

    input: Path
    outputs: SegmentOutputs
    n_objects: int
    n_tiles: int
    n_points: int
    seconds: float

    def line(self) -> str:
        return (f"{self.input}: {self.n_objects} objects in {self.seconds:.1f} s "
                f"({self.n_tiles} tiles) -> {self.outputs.folder}")


def output_folder(source, out_dir: str | os.PathLike) -> Path:
    """``DIR/<stem>`` for an input path."""
    return Path(out_dir) / input_stem(source)


def segment_file(
    source,
    out_dir: str | os.PathLike,
    model,
    *,
    embeddings: str | os.PathLike | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    scale: int | None = None,
    bands: Sequence[int] | None = None,
    batch_size: int | None = None,
    config: SegmentConfig | None = None,
    executor=None,
    overwrite: bool = False,
    model_name: str | None = None,
) -> ProgressGen[SegmentSummary]:
    """Segment one raster into ``out_dir/<stem>/``; yield Progress, return a SegmentSummary.

    ``model``: a built ``sam_model.Sam`` (already on its device). ``embeddings``:
    an embedding store to use and complete (made by ``napari-sam embed`` with the
    same model and tiling); None embeds into a temporary store. ``executor``: a
    ``DaskExecutor`` to decode tiles on a cluster, None to decode here.
    """
    from napari_sam.core.io.raster import open_raster
    from napari_sam.core.tiling.embed import embed_raster

    start = time.perf_counter()
    config = config or SegmentConfig()
    raster = open_raster(source)
    if embeddings is not None and Path(embeddings).exists():
        # an existing store's tiling and bands are the defaults: no need to repeat them
        from napari_sam.core.tiling.store import EmbeddingStore

        stored = EmbeddingStore.open(embeddings, mode="r").settings
        if tile_size is None and overlap is None and scale is None:
            tile_size, overlap, scale = (stored.grid.tile_size, stored.grid.overlap,
                                         stored.grid.scale)
        if bands is None:
            bands = stored.source.get("bands")
    raster = raster.select_bands(bands if bands is not None else raster.default_bands())
    folder = check_writable(output_folder(source, out_dir), overwrite)
    temporary = embeddings is None
    store_path = Path(embeddings) if embeddings is not None else (
        Path(out_dir) / f".{folder.name}.embeddings-{uuid.uuid4().hex[:8]}.zarr")
    made_folder = not store_path.parent.exists()
    store_path.parent.mkdir(parents=True, exist_ok=True)
    finished = False
    try:
        store = yield from embed_raster(raster, store_path, model, tile_size=tile_size,
                                        overlap=overlap, scale=scale, batch_size=batch_size,
                                        device=None, model_name=model_name)
        grid = store.grid
        holder: dict = {}

        def produce(sink):
            result: SegmentResult = yield from segment_tiles(
                raster, grid, store_embeddings(store), model, config=config, sink=sink,
                executor=executor)
            holder["result"] = result
            return result

        outputs = yield from write_segmentation(raster, folder, produce, overwrite=overwrite,
                                                zarr_labels=is_zarr_input(source))
        finished = True
    finally:
        if temporary:
            shutil.rmtree(store_path, ignore_errors=True)
        if made_folder and not finished:
            with contextlib.suppress(OSError):  # only an empty folder this run made
                store_path.parent.rmdir()
    result = holder["result"]
    return SegmentSummary(input=Path(str(source)), outputs=outputs, n_objects=outputs.n_objects,
                          n_tiles=result.n_tiles, n_points=result.n_points,
                          seconds=time.perf_counter() - start)


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
    model=None,
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
    **options,
) -> list[SegmentSummary]:
    """Script API of ``napari-sam segment``: automatic segmentation of whole rasters.

    ``inputs``: a path or a list of paths. ``model``: a model name or a built
    ``Sam``; ``checkpoint``: an official weights file. ``options``: the fields
    of :class:`SegmentConfig` (``points_per_side``, ``pred_iou_thresh``,
    ``stability_score_thresh``, ``box_nms_thresh``, ``min_area``,
    ``max_area``, ``stitch_seams``, ...). ``scheduler``: a dask scheduler address;
    ``workers``: start that many local dask workers. Returns one summary
    per input.
    """
    from napari_sam.core import progress as progress_mod

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    try:
        SegmentConfig(**options)  # bad options fail before the model loads
    except (TypeError, ValueError) as exc:
        raise InputError(f"segment: {exc}") from exc
    check_inputs(inputs, out, embeddings=embeddings, overwrite=overwrite)
    name = None
    if isinstance(model, str) or model is None:
        from napari_sam.core.models import load_model

        name = model
        model = load_model(model, checkpoint, device=device)
    config = config_for_model(name or getattr(model, "model_name", None), options)
    drain = progress_mod.run_with_bar if progress else progress_mod.run
    summaries = []
    with _executor(scheduler, workers) as executor:
        for src in inputs:
            gen = segment_file(src, out, model, embeddings=embeddings, tile_size=tile_size,
                               overlap=overlap, scale=scale, bands=bands, batch_size=batch_size,
                               config=config, executor=executor, overwrite=overwrite,
                               model_name=name)
            summaries.append(drain(gen))
    return summaries


def config_for_model(model_name: str | None, options: dict) -> SegmentConfig:
    """A SegmentConfig from ``options``, with the mask thresholds suited to the
    model (``sam_model.automatic_thresholds``) where ``options`` leaves them out."""
    from sam_model import automatic_thresholds

    return SegmentConfig(**{**automatic_thresholds(model_name), **options})


def _executor(scheduler: str | None, workers: int | None):
    import contextlib

    if scheduler is None and workers is None:
        return contextlib.nullcontext(None)
    from napari_sam.core.automatic.distributed import dask_executor

    return dask_executor(scheduler=scheduler, workers=workers)
