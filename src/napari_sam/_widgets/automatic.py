"""Automatic segmentation of a whole image layer, tile by tile, with progress and cancel.

The parameters are core's ``SegmentConfig``, as in ``napari-sam segment``
(the edge margin and the deduplication thresholds stay at their defaults).
The run (core's ``segment_file``, as the CLI's) embeds the tiles (into a
chosen embedding store, whose tiling and bands it then follows, or a
temporary one), decodes a point grid on every tile, merges objects across
tiles, and adds a Labels layer
whose ``features`` hold the object table (id, box, area, predicted IoU,
stability, centroid, tile). With an output folder it also writes the CLI's
``labels.tif`` / ``objects.gpkg`` / ``objects.csv``. Cancel stops the run at
its next step; nothing half-written is left.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)

from napari_sam._widgets import layers as L
from napari_sam._widgets import stack as S
from napari_sam._widgets.dock import ScrollingDock
from napari_sam._widgets.model_panel import ModelCache, ModelFactory, ModelPanel
from napari_sam._widgets.state import AutomaticConfig
from napari_sam._widgets.worker import Task, describe
from napari_sam.core.automatic.settings import POINT_MODES, REFINE_MODES, format_scales

if TYPE_CHECKING:
    import napari

    from napari_sam._widgets.engine import AutomaticResult


class AutomaticWidget(ScrollingDock):
    """Dock widget running automatic segmentation on the chosen image layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, *,
                 model_factory: ModelFactory | None = None,
                 model_names: list[str] | None = None, tile_size: int = 0,
                 overlap: int = -1) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._models = ModelCache(model_factory)
        self._task: Task | None = None
        self._last_event: Any = None
        self._calls_seen = self._calls_at_event = 0
        self._per_batch = 1  # points per decoder call of the current run (set when it starts)
        self._full_grid = False  # the current run decodes the full point grid
        self.result: AutomaticResult | None = None
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.model = ModelPanel(names=model_names, tile_size=tile_size, overlap=overlap)
        d = AutomaticConfig().segment
        self.points_per_side = SpinBox(label="points per side", min=1, max=256,
                                       value=d.points_per_side,
                                       tooltip="Point grid density per tile side")
        self.points_per_batch = SpinBox(label="points per batch (0: auto)", min=0, max=4096,
                                        value=d.points_per_batch or 0,
                                        tooltip="0: 16 on a CPU, 64 on a GPU")
        self.pred_iou_thresh = FloatSpinBox(label="pred IoU thresh", min=0.0, max=1.0,
                                            step=0.01, value=d.pred_iou_thresh)
        self.stability_score_thresh = FloatSpinBox(label="stability thresh", min=0.0, max=1.0,
                                                   step=0.01, value=d.stability_score_thresh)
        self.box_nms_thresh = FloatSpinBox(label="box NMS thresh", min=0.0, max=1.0, step=0.01,
                                           value=d.box_nms_thresh)
        self.points = ComboBox(
            label="points", choices=POINT_MODES, value=d.points,
            tooltip="coarse: a sparse grid first, then points only where no object was "
                    "found yet (about 4x fewer decoder calls); full: every grid point, "
                    "as the paper's generator")
        self.point_levels = SpinBox(
            label="coarse levels", min=1, max=8, value=d.point_levels,
            tooltip="Levels of the coarse-to-fine grid: the first decodes 1/2**(levels-1) "
                    "of the points per side, each next level doubles them where no object "
                    "was found yet (points: coarse only)")
        self.cover_iou = FloatSpinBox(
            label="cover IoU", min=0.0, max=1.0, step=0.05, value=d.cover_iou,
            tooltip="A mask scored under this does not hide the finest points under it from "
                    "the decoder: a doubtful first answer gets more prompts, as the full "
                    "grid gives every object (0: every mask hides; points: coarse only)")
        self.scales = LineEdit(
            label="scales", value=format_scales(d.scales),
            tooltip="The image is also segmented downscaled by these factors, so that "
                    "objects larger than a tile are found whole (1: full resolution only)")
        self.refine = ComboBox(
            label="refine masks", choices=REFINE_MODES, value=d.refine,
            tooltip="Decode each accepted mask once more from its own mask (SAM 2's "
                    "mask-to-mask step): coarse: the downscaled passes only (more "
                    "objects larger than a tile whole, about 25% more decoder calls); "
                    "all: every pass")
        self.min_region_area = SpinBox(label="min region (px)", min=0, max=2**31 - 1,
                                       value=d.min_region_area,
                                       tooltip="Fill holes and remove islands smaller than this")
        self.min_area = SpinBox(label="min area (px)", min=0, max=2**31 - 1, value=d.min_area)
        self.max_area = SpinBox(label="max area (0: none)", min=0, max=2**31 - 1,
                                value=d.max_area or 0, tooltip="0: no upper limit")
        self.stitch_seams = CheckBox(text="join objects cut by tile borders",
                                     value=d.stitch_seams)
        self.max_area_fraction = FloatSpinBox(
            label="max share of image", min=0.01, max=1.0, step=0.05,
            value=d.max_area_fraction,
            tooltip="Drop objects covering more than this share of the image (background "
                    "such as sea or sky); 1: keep them")
        self.store = FileEdit(label="embeddings", mode="d", value="",
                              tooltip="Embedding store to use and complete; empty: temporary")
        self.out_dir = FileEdit(label="output folder", mode="d", value="",
                                tooltip="Also write labels.tif, objects.gpkg and objects.csv "
                                        "into FOLDER/<layer name>/; empty: only the layer")
        self.overwrite = CheckBox(text="overwrite existing outputs", value=False)
        self.scheduler = LineEdit(
            label="dask scheduler", value="",
            tooltip="Address of a running dask.distributed scheduler (tcp://host:8786) "
                    "to decode the tiles on, as `napari-sam segment --scheduler`; "
                    "empty: decode here")
        self.workers = SpinBox(
            label="local dask workers", min=0, max=256, value=0,
            tooltip="Decode the tiles on this many local dask worker processes, started "
                    "for the run (they share this machine's cores), as `napari-sam segment "
                    "--workers`; 0: decode in this process. Not with a scheduler address")
        self.planes = ComboBox(label="planes (stacks)", choices=S.PLANE_MODES,
                               value=S.PLANE_MODES[0],
                               tooltip="For an image with z/t axes: the plane shown, every "
                                       "plane, or every plane with objects overlapping in "
                                       "consecutive planes joined into one id")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, visible=False)
        self.status = Label(value="")
        self.extend([
            self.image, self.points_per_side, self.points_per_batch, self.pred_iou_thresh,
            self.stability_score_thresh, self.box_nms_thresh, self.points, self.point_levels,
            self.cover_iou, self.scales, self.refine, self.min_region_area,
            self.min_area, self.max_area, self.max_area_fraction, self.stitch_seams,
            *self.model.widgets, self.store, self.out_dir, self.overwrite, self.scheduler,
            self.workers, self.planes,
            Container(layout="horizontal", labels=False,
                      widgets=[self.run_button, self.cancel_button]),
            self.progress, self.status])
        self.run_button.changed.connect(self.run)
        self.points.changed.connect(self._points_changed)
        self._points_changed(self.points.value)
        self._pick_image(napari_viewer)
        self.cancel_button.changed.connect(self.cancel)
        self.model.model_name.changed.connect(self._use_model_thresholds)
        self._use_model_thresholds(self.model.model_name.value)

    def _pick_image(self, viewer: Any) -> None:
        """Start on the top-most visible image (magicgui would pick the bottom one)."""
        from napari.layers import Image

        layer = L.preferred_layer(viewer, Image, ("SAM points", "SAM boxes"))
        self.image.reset_choices()
        if layer is not None and layer in list(self.image.choices):
            self.image.value = layer

    def _use_model_thresholds(self, name: str) -> None:
        """Mask thresholds suited to the chosen model (the embedded models score lower)."""
        from sam_model import automatic_thresholds

        thresholds = automatic_thresholds(name)
        self.pred_iou_thresh.value = thresholds["pred_iou_thresh"]
        self.stability_score_thresh.value = thresholds["stability_score_thresh"]

    def _points_changed(self, mode: str) -> None:
        # the full grid has no levels, and decodes every point anyway
        self.point_levels.enabled = self.cover_iou.enabled = mode == "coarse"

    @property
    def busy(self) -> bool:
        return self._task is not None and self._task.running

    def config(self) -> AutomaticConfig:
        return AutomaticConfig.from_widget(self, model=self.model.model_choice(),
                                           tiling=self.model.tiling_choice())

    def run(self, *_: Any) -> Task | None:
        """Start a run in a worker thread (one at a time)."""
        image = self.image.value
        if image is None or self.busy:
            self.status.value = ("no image layer: open an image or choose one above"
                                 if image is None else "busy: wait, or press Cancel")
            return None
        try:
            config = self.config()
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        if S.is_stack(image):
            mode = S.PLANE_MODES.index(self.planes.value)
            planes = ([S.shown_plane(self._viewer, image)] if mode == 0 else
                      [tuple(int(i) for i in ix) for ix in
                       np.ndindex(*S.image_axes(image).stack_shape)])
            return self._start(image, lambda: self._planes_gen(image, planes, config, mode == 2),
                               f"starting ({len(planes)} plane(s))...")
        source = L.raster_source(image)
        name = re.sub(r"[^\w.-]+", "_", image.name).strip("._") or "image"
        return self._start(image, lambda: self._run_gen(source, config, name), "starting...")

    def _start(self, image: Any, factory: Any, message: str) -> Task:
        self.result = None
        self._last_event, self._calls_seen, self._calls_at_event = None, 0, 0
        self._set_running(True)
        self.status.value = message
        self._task = Task(factory, on_done=lambda result: self._show(image, result),
                          on_event=self._event, on_finish=self._finished,
                          on_activity=self._activity, desc="SAM automatic")
        return self._task

    def _run_gen(self, source: Any, config: AutomaticConfig, name: str):
        from napari_sam._widgets.engine import automatic_gen

        model = self._run_model(config)
        return (yield from automatic_gen(source, model, config, name=name))

    def _run_model(self, config: AutomaticConfig) -> Any:
        """The run's model; notes how it decodes, for the in-tile progress: points per
        decoder call (the config's, else the device's choice) and whether the full grid."""
        from napari_sam.core.automatic.decode import points_per_batch_for

        model = self._models.get(config.model)
        self._per_batch = config.segment.points_per_batch or points_per_batch_for(model.device)
        self._full_grid = config.segment.points == "full"
        return model

    def _planes_gen(self, image: Any, planes: list, config: AutomaticConfig, join: bool):
        model = self._run_model(config)
        return (yield from S.automatic_planes_gen(image, planes, model, config, join=join))

    def cancel(self, *_: Any) -> None:
        """Stop the run at its next step; temporary files are removed."""
        if self.busy:
            self._task.cancel()
            self.status.value = "cancelling..."

    def _event(self, event: Any) -> None:
        self._last_event, self._calls_at_event = event, self._calls_seen
        self.progress.max = max(1, event.total) * 100  # hundredths of a tile
        self.progress.value = min(event.done * 100, self.progress.max)
        self.status.value = describe(event)

    def _activity(self, activity: Any) -> None:
        """Progress inside the current tile: encoder blocks run, or decoder calls made:
        with the full grid out of the ``ceil(points_per_side**2 / points_per_batch)`` a
        tile needs (the run's batch: the device's when the widget says 0), coarse-to-fine
        as a count (a tile's total is known only at its end)."""
        event = self._last_event
        if activity.kind == "decoder":
            self._calls_seen = activity.calls
        if event is None or event.total <= 0 or event.done >= event.total:
            return
        if activity.kind == "encoder":
            fraction = activity.fraction
        elif self._full_grid:
            per_tile = -(-self.points_per_side.value ** 2 // max(1, self._per_batch))
            fraction = min(0.95, (activity.calls - self._calls_at_event) / max(1, per_tile))
        else:  # coarse-to-fine: how many calls a tile takes is known only at its end
            calls = activity.calls - self._calls_at_event
            plural = "" if calls == 1 else "s"
            self.status.value = f"{describe(event)} ({calls} decoder call{plural} in the next tile)"
            return
        self.progress.value = min(int((event.done + fraction) * 100), self.progress.max)
        self.status.value = f"{describe(event)} ({fraction:.0%} of the next tile)"

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        self.progress.visible = running
        self.progress.value = 0

    def _show(self, image: napari.layers.Image, result: AutomaticResult) -> None:
        from napari.layers import Labels

        self.result = result
        table = result.table.assign(index=result.table["id"])
        name = f"{image.name} SAM objects"
        if name in self._viewer.layers:
            self._viewer.layers.remove(name)
        data = getattr(result.labels, "levels", result.labels)  # SparseLabels: its pyramid
        stacked = S.is_stack(image)
        affine = L.full_affine(image) if stacked else L.aligned_affine(image)
        if stacked:  # one row per object and plane: napari wants one per label id
            table = table.drop_duplicates("id")
        layer = Labels(data, name=name, affine=affine, opacity=0.5, features=table)
        geo = L.georeference(image)
        L.set_georeference(layer, geo if geo["transform"] is not None else result.georeference)
        self._viewer.add_layer(layer)
        where = f"; written to {result.folder}" if result.folder is not None else ""
        if stacked and self.out_dir.value and str(self.out_dir.value) not in ("", "."):
            where = "; the output folder is not used for stacks (Export writes .zarr)"
        if stacked and (str(self.scheduler.value).strip() or self.workers.value):
            where += "; stacks are decoded here, not on dask workers"
        self.status.value = f"{len(table)} objects on {result.n_tiles} tile(s){where}"

    def _finished(self, task: Task) -> None:
        self._set_running(False)
        if task.state == "cancelled":
            self.status.value = "cancelled"
        elif task.state == "failed":
            self.status.value = f"failed: {task.error}"
