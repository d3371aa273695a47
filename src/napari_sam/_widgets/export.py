"""Export a Labels layer: labels to GeoTIFF/zarr, polygons to a vector file.

The georeference comes from the layer's metadata (``metadata["napari_sam"]``,
set by this plugin's reader and widgets): labels keep the transform and CRS,
polygons are written in that CRS (QuPath output is always in pixels). A
layer without a georeference is written in pixel coordinates, and the widget
says so before anything is written. The sparse labels of a large image are
read window by window, never as one full-size array.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
)

from napari_sam._widgets import layers as L
from napari_sam._widgets.dock import ScrollingDock
from napari_sam._widgets.session import CANDIDATE
from napari_sam._widgets.state import VECTOR_FORMATS, ExportConfig
from napari_sam._widgets.worker import Task, describe
from napari_sam.core.io.nd import guess_axes

if TYPE_CHECKING:
    import napari

_EXTENSIONS = {".gpkg": "gpkg", ".geojson": "geojson", ".json": "geojson",
               ".parquet": "parquet", ".shp": "shp"}


class ExportWidget(ScrollingDock):
    """Dock widget writing the chosen Labels layer to disk, with its CRS."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._task: Task | None = None
        self.written: list[Path] = []
        self.layer = ComboBox(label="labels layer", choices=self._labels_choices,
                              tooltip="A Labels layer (the temporary candidate is not offered)")
        self.crs = Label(label="CRS", value="")
        self.labels_path = FileEdit(label="labels file", mode="w", value="",
                                    filter="*.tif *.tiff *.zarr",
                                    tooltip="GeoTIFF (.tif) or zarr (.zarr); empty: skip")
        self.vectors_path = FileEdit(label="polygons file", mode="w", value="",
                                     filter="*.gpkg *.geojson *.parquet *.shp",
                                     tooltip="GeoPackage, GeoJSON, GeoParquet or Shapefile; "
                                             "empty: skip")
        self.vector_format = ComboBox(label="polygon format", choices=VECTOR_FORMATS,
                                      value="gpkg", tooltip="qupath: QuPath GeoJSON in pixels")
        self.simplify = FloatSpinBox(label="simplify", min=0.0, max=1e6, step=0.5, value=0.0,
                                     tooltip="Tolerance in map units (pixels without a CRS); "
                                             "0 keeps the exact pixel outlines")
        self.overwrite = CheckBox(text="overwrite existing files", value=False)
        self.export_button = PushButton(text="Export")
        self.status = Label(value="")
        self.extend([self.layer, self.crs, self.labels_path, self.vectors_path,
                     self.vector_format, self.simplify, self.overwrite, self.export_button,
                     self.status])
        self.layer.changed.connect(self._layer_changed)
        self.vectors_path.changed.connect(self._vectors_path_changed)
        self.export_button.changed.connect(self.export)
        for signal in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed,
                       napari_viewer.layers.events.moved):
            signal.connect(lambda *_: self.layer.reset_choices())
        top = L.preferred_layer(napari_viewer, _labels_type(), (CANDIDATE,))
        if top is not None:
            self.layer.value = top
        self._layer_changed(self.layer.value)

    def _labels_choices(self, *_: Any) -> list[tuple[str, Any]]:
        """The viewer's Labels layers, top first, without the interactive candidate."""
        kind = _labels_type()
        return [(x.name, x) for x in reversed(self._viewer.layers)
                if isinstance(x, kind) and x.name != CANDIDATE]

    @property
    def busy(self) -> bool:
        return self._task is not None and self._task.running

    def _layer_changed(self, layer: napari.layers.Labels | None) -> None:
        self.crs.value = L.crs_name(L.georeference(layer)) if layer is not None else ""

    def _vectors_path_changed(self, value: Any) -> None:
        suffix = Path(str(value)).suffix.lower()
        if suffix in _EXTENSIONS and self.vector_format.value != "qupath":
            self.vector_format.value = _EXTENSIONS[suffix]

    def config(self) -> ExportConfig:
        return ExportConfig.from_widget(self)

    def export(self, *_: Any) -> Task | None:
        """Write the outputs in a worker; ``written`` lists them when it is done."""
        layer = self.layer.value
        if layer is None or self.busy:
            self.status.value = ("no labels layer to export: accept objects or run automatic "
                                 "segmentation first" if layer is None else
                                 "busy: wait for the export to finish")
            return None
        try:
            config = self.config()
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        from napari_sam._widgets.engine import export_gen

        labels = L.level0(layer)
        if hasattr(labels, "to_dask"):  # SparseLabels: the writers read it chunk by chunk
            labels = labels.to_dask()
        geo = L.georeference(layer)
        if layer.ndim > 2:  # a stack: its axes by name, for the OME-Zarr labels
            geo["axes"] = guess_axes(layer.ndim, names=list(layer.axis_labels))
        attributes = _object_table(layer)
        self.written = []
        self.status.value = "exporting..."
        self._task = Task(lambda: export_gen(labels, geo, config, attributes=attributes),
                          on_done=self._done, on_finish=self._finished,
                          on_event=lambda e: setattr(self.status, "value", describe(e)),
                          desc="SAM export")
        return self._task

    def _done(self, paths: list[Path]) -> None:
        self.written = list(paths)
        self.status.value = "wrote " + ", ".join(p.name for p in paths)

    def _finished(self, task: Task) -> None:
        if task.state == "failed":
            self.status.value = f"export failed: {task.error}"


def _object_table(layer: napari.layers.Labels) -> Any:
    """The layer's per-object features with an ``id`` column, or None."""
    features = layer.features
    if features is None or not len(features):
        return None
    table = features.copy()
    if "id" not in table.columns:
        if "index" not in table.columns:
            return None
        table = table.rename(columns={"index": "id"})
    return table


def _labels_type() -> type:
    from napari.layers import Labels

    return Labels
