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

from magicgui.widgets import (
    CheckBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)

from napari_sam._widgets import layers as L
from napari_sam._widgets.model_panel import ModelCache, ModelFactory, ModelPanel
from napari_sam._widgets.state import AutomaticConfig
from napari_sam._widgets.worker import Task, describe

if TYPE_CHECKING:
    import napari

    from napari_sam._widgets.engine import AutomaticResult


class AutomaticWidget(Container):
    """Dock widget running automatic segmentation on the chosen image layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, *,
                 model_factory: ModelFactory | None = None,
                 model_names: list[str] | None = None, tile_size: int = 0,
                 overlap: int = -1) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._models = ModelCache(model_factory)
        self._task: Task | None = None
        self.result: AutomaticResult | None = None
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.model = ModelPanel(names=model_names, tile_size=tile_size, overlap=overlap)
        d = AutomaticConfig().segment
        self.points_per_side = SpinBox(label="points per side", min=1, max=256,
                                       value=d.points_per_side,
                                       tooltip="Point grid density per tile side")
        self.points_per_batch = SpinBox(label="points per batch", min=1, max=4096,
                                        value=d.points_per_batch)
        self.pred_iou_thresh = FloatSpinBox(label="pred IoU thresh", min=0.0, max=1.0,
                                            step=0.01, value=d.pred_iou_thresh)
        self.stability_score_thresh = FloatSpinBox(label="stability thresh", min=0.0, max=1.0,
                                                   step=0.01, value=d.stability_score_thresh)
        self.box_nms_thresh = FloatSpinBox(label="box NMS thresh", min=0.0, max=1.0, step=0.01,
                                           value=d.box_nms_thresh)
        self.min_region_area = SpinBox(label="min region (px)", min=0, max=2**31 - 1,
                                       value=d.min_region_area,
                                       tooltip="Fill holes and remove islands smaller than this")
        self.min_area = SpinBox(label="min area (px)", min=0, max=2**31 - 1, value=d.min_area)
        self.max_area = SpinBox(label="max area (0: none)", min=0, max=2**31 - 1,
                                value=d.max_area or 0, tooltip="0: no upper limit")
        self.stitch_seams = CheckBox(text="join objects cut by tile borders",
                                     value=d.stitch_seams)
        self.store = FileEdit(label="embeddings", mode="d", value="",
                              tooltip="Embedding store to use and complete; empty: temporary")
        self.out_dir = FileEdit(label="output folder", mode="d", value="",
                                tooltip="Also write labels.tif, objects.gpkg and objects.csv "
                                        "into FOLDER/<layer name>/; empty: only the layer")
        self.overwrite = CheckBox(text="overwrite existing outputs", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, visible=False)
        self.status = Label(value="")
        self.extend([
            self.image, self.points_per_side, self.points_per_batch, self.pred_iou_thresh,
            self.stability_score_thresh, self.box_nms_thresh, self.min_region_area,
            self.min_area, self.max_area, self.stitch_seams, *self.model.widgets, self.store, self.out_dir, self.overwrite,
            Container(layout="horizontal", labels=False,
                      widgets=[self.run_button, self.cancel_button]),
            self.progress, self.status])
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.model.model_name.changed.connect(self._use_model_thresholds)
        self._use_model_thresholds(self.model.model_name.value)

    def _use_model_thresholds(self, name: str) -> None:
        """Mask thresholds suited to the chosen model (sam_tiny scores lower)."""
        from sam_model import automatic_thresholds

        thresholds = automatic_thresholds(name)
        self.pred_iou_thresh.value = thresholds["pred_iou_thresh"]
        self.stability_score_thresh.value = thresholds["stability_score_thresh"]

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
            return None
        try:
            config = self.config()
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        source = L.raster_source(image)
        name = re.sub(r"[^\w.-]+", "_", image.name).strip("._") or "image"
        self.result = None
        self._set_running(True)
        self.status.value = "starting..."
        self._task = Task(lambda: self._run_gen(source, config, name),
                          on_done=lambda result: self._show(image, result),
                          on_event=self._event, on_finish=self._finished,
                          desc="SAM automatic")
        return self._task

    def _run_gen(self, source: Any, config: AutomaticConfig, name: str):
        from napari_sam._widgets.engine import automatic_gen

        model = self._models.get(config.model)
        return (yield from automatic_gen(source, model, config, name=name))

    def cancel(self, *_: Any) -> None:
        """Stop the run at its next step; temporary files are removed."""
        if self.busy:
            self._task.cancel()
            self.status.value = "cancelling..."

    def _event(self, event: Any) -> None:
        self.progress.max = max(1, event.total)
        self.progress.value = min(event.done, self.progress.max)
        self.status.value = describe(event)

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
        layer = Labels(data, name=name, affine=L.aligned_affine(image), opacity=0.5,
                       features=table)
        geo = L.georeference(image)
        L.set_georeference(layer, geo if geo["transform"] is not None else result.georeference)
        self._viewer.add_layer(layer)
        where = f"; written to {result.folder}" if result.folder is not None else ""
        self.status.value = f"{len(table)} objects on {result.n_tiles} tile(s){where}"

    def _finished(self, task: Task) -> None:
        self._set_running(False)
        if task.state == "cancelled":
            self.status.value = "cancelled"
        elif task.state == "failed":
            self.status.value = f"failed: {task.error}"
