"""The layers of an interactive session: prompts, the shown candidate, accepted labels.

:class:`PromptLayers` creates them in the viewer, aligned to the image's pixel
frame, binds the session's keys on each (a layer's own keys, such as Z for
pan/zoom, would otherwise win over the viewer's), keeps the points layer
active so that clicks keep adding prompts, and owns the label editor (accept
and undo). It holds no prediction logic. Labels of a large or multiscale image
live in a sparse, multiscale store (:func:`new_labels_data`), never in a
full-size array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sam._widgets import layers as L
from napari_sam._widgets.state import Candidates
from napari_sam.core.io.sparse_labels import SparseLabels

if TYPE_CHECKING:
    import napari

POINTS, BOXES, CANDIDATE, LABELS = "SAM points", "SAM boxes", "SAM candidate", "SAM labels"
SPARSE_ABOVE = 4096 * 4096  # images with more pixels get sparse, multiscale labels


class PromptLayers:
    """Points, boxes, candidate and labels layers of one viewer.

    ``keys``: key -> action (no argument), bound on the viewer and on every
    layer made here; ``on_change``: called with napari's data event whenever
    the prompts change (not while :meth:`clear` empties them).
    """

    def __init__(self, viewer: napari.viewer.Viewer, *, keys: dict[str, Callable[[], Any]],
                 on_change: Callable[[Any], None]) -> None:
        self.viewer = viewer
        self._keys = keys
        self._on_change = on_change
        self._clearing = False
        self._editor: L.LabelEditor | None = None
        self.bind(viewer)

    def bind(self, target: Any) -> Any:
        for key, action in self._keys.items():
            target.bind_key(key, _ignore_arg(action), overwrite=True)
        return target

    def _get(self, name: str) -> Any:
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @property
    def points(self) -> napari.layers.Points | None:
        return self._get(POINTS)

    @property
    def shapes(self) -> napari.layers.Shapes | None:
        return self._get(BOXES)

    @property
    def labels(self) -> napari.layers.Labels | None:
        return self._get(LABELS)

    def attach(self, image: napari.layers.Image, *, positive: bool) -> None:
        """Create the prompt layers (or realign them) on ``image``; points in add mode."""
        points, shapes = self.points, self.shapes
        if points is None:
            points = self.bind(self.viewer.add_layer(L.new_points_layer(image, POINTS)))
            points.events.data.connect(self._changed)
        if shapes is None:
            shapes = self.bind(self.viewer.add_layer(L.new_shapes_layer(image, BOXES)))
            shapes.events.data.connect(self._changed)
        for layer in (points, shapes):
            layer.affine = L.aligned_affine(image)
        self.set_positive(positive)
        self.activate_points()
        points.mode = "add"

    def _changed(self, event: Any) -> None:
        if not self._clearing:
            self._on_change(event)

    def _below_prompts(self, layer: Any) -> None:
        """Move ``layer`` under the prompt layers so that points stay visible on top."""
        below = [self.viewer.layers.index(x) for x in (self.points, self.shapes)
                 if x is not None]
        if below and self.viewer.layers.index(layer) > min(below):
            self.viewer.layers.move(self.viewer.layers.index(layer), min(below))

    def activate_points(self) -> None:
        """Re-select the points layer (napari selects each new layer)."""
        if self.points is not None:
            self.viewer.layers.selection.active = self.points

    def set_positive(self, value: bool) -> None:
        """The sign of the next points."""
        if self.points is not None:
            self.points.feature_defaults["positive"] = bool(value)

    def flip_selected(self) -> bool:
        """In select mode, flip the sign of the selected points; False when there are none."""
        points = self.points
        selected = sorted(points.selected_data) if points is not None else []
        if not selected or points.mode != "select":
            return False
        flags = np.asarray(points.features["positive"], dtype=bool).copy()
        flags[selected] = ~flags[selected]
        points.features["positive"] = flags
        points.refresh_colors()
        self._on_change(None)
        return True

    def show(self, image: napari.layers.Image, candidates: Candidates | None,
             index: int | None) -> None:
        """Show candidate ``index`` in "SAM candidate" (emptied when there is none)."""
        if index is None and self._get(CANDIDATE) is None:
            return
        created = self._get(CANDIDATE) is None
        layer = L.show_candidate(self.viewer, image, candidates if index is not None else None,
                                 index or 0, CANDIDATE)
        if created:
            self.bind(layer)
            self._below_prompts(layer)
            self.activate_points()

    def editor(self, image: napari.layers.Image,
               georeference: Callable[[], dict] | None = None) -> L.LabelEditor:
        """The editor of "SAM labels", made on first use with the image's size and CRS.

        ``georeference`` gives the raster's georeference when the image layer's
        metadata has none. See :func:`new_labels_data` for what holds the labels.
        """
        labels = self.labels
        if labels is None:
            from napari.layers import Labels

            data = new_labels_data(image)
            labels = Labels(data, name=LABELS, affine=L.aligned_affine(image), opacity=0.6)
            geo = L.georeference(image)
            if geo["transform"] is None and georeference is not None:
                geo = georeference()
            L.set_georeference(labels, geo)
            self.bind(self.viewer.add_layer(labels))
            self._below_prompts(labels)
            self.activate_points()
        if self._editor is None or self._editor.layer is not labels:
            self._editor = L.LabelEditor(labels)
        return self._editor

    def undo(self) -> int:
        """Undo the last accepted object; its id, or 0."""
        return self._editor.undo() if self._editor is not None else 0

    def clear(self) -> None:
        """Remove every point and shape (without triggering a prediction)."""
        self._clearing = True
        try:
            for layer in (self.points, self.shapes):
                if layer is not None and len(layer.data):
                    layer.selected_data = set(range(len(layer.data)))
                    layer.remove_selected()
        finally:
            self._clearing = False


def new_labels_data(image: napari.layers.Image, *, limit: int = SPARSE_ABOVE) -> Any:
    """Storage for accepted labels the size of ``image``'s full-resolution level.

    A numpy uint32 array (napari can paint on it) for an image of at most
    ``limit`` pixels that is not multiscale; else the levels of a
    :class:`SparseLabels` (memory only where objects are, shown as multiscale
    labels, which napari cannot paint on).
    """
    height, width = L.image_shape(image)
    if height * width <= limit and not getattr(image, "multiscale", False):
        return np.zeros((height, width), dtype=np.uint32)
    return SparseLabels((height, width)).levels  # one level only: napari unwraps it


def _ignore_arg(action: Callable[[], Any]) -> Callable[[Any], None]:
    """A key callback (napari passes the viewer or layer) calling ``action()``."""

    def call(_viewer_or_layer: Any) -> None:
        action()

    call.__name__ = call.__doc__ = action.__name__
    return call
