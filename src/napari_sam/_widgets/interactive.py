"""Interactive segmentation: click or draw prompts, pick a candidate, accept it.

Prompts live in two layers aligned to the image's pixel frame: "SAM points"
(a boolean ``positive`` feature; green positive, red negative) and "SAM boxes"
(rectangles or polygons; the last one drawn is the box prompt). Each change
runs a prediction in a worker thread: core picks the tile that holds the
prompt (embedding it first when needed), so clicks anywhere on a raster of any
size work. The candidates appear in "SAM candidate" (magenta) with their predicted IoU;
accepting writes the chosen one into "SAM labels" with a new id.

Keys: A accept, Z undo, N next candidate, T toggle positive/negative.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    PushButton,
    create_widget,
)

from napari_sam._widgets import layers as L
from napari_sam._widgets import stack as S
from napari_sam._widgets.checks import no_candidates, on_nodata
from napari_sam._widgets.dock import ScrollingDock
from napari_sam._widgets.model_panel import ModelCache, ModelFactory, ModelPanel
from napari_sam._widgets.session import BOXES, CANDIDATE, LABELS, POINTS, PromptLayers
from napari_sam._widgets.state import Candidates, InteractiveConfig, PromptSet
from napari_sam._widgets.worker import Task, describe

if TYPE_CHECKING:
    import napari

__all__ = ["CANDIDATE", "LABELS", "InteractiveWidget"]

OWN_LAYERS = (POINTS, BOXES, CANDIDATE)
PLANE_ENGINES = 32  # planes of a stack whose engines (and embeddings) stay in memory
READY = "add a point or draw a box"


class InteractiveWidget(ScrollingDock):
    """Dock widget for prompt-based segmentation of the selected image layer.

    ``model_factory`` (ModelChoice -> Sam) replaces loading the chosen model
    (tests pass a tiny one); ``tile_size``/``overlap`` preset the tiling
    (0 / -1: core's defaults).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, *,
                 model_factory: ModelFactory | None = None,
                 model_names: list[str] | None = None, tile_size: int = 0,
                 overlap: int = -1) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._models = ModelCache(model_factory)
        self._no_candidate_reason = ""
        self._engine: Any = None
        self._engine_key: tuple | None = None
        self._engines: OrderedDict[tuple, Any] = OrderedDict()  # one per plane of a stack
        self._plane: tuple[int, ...] = ()  # the plane the prompts and candidates are on
        self._last_accepted: tuple | None = None  # (image, plane, id, window, mask, score)
        self._task: Task | None = None
        self._pending = False
        self.candidates: Candidates | None = None

        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.model = ModelPanel(names=model_names, tile_size=tile_size, overlap=overlap)
        self.store = FileEdit(label="embeddings", mode="d", value="",
                              tooltip="Optional embedding store (.zarr) for this image and "
                                      "model; empty: tiles are embedded in memory as needed")
        self.embed_button = PushButton(text="Embed all tiles",
                                       tooltip="Fill the embedding store in the background")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.positive = CheckBox(text="positive points (T toggles)", value=True)
        self.multimask = CheckBox(text="three candidates per prompt", value=True)
        self.auto_predict = CheckBox(text="predict on every change", value=True)
        self.overwrite_labels = CheckBox(text="accept over existing labels", value=False)
        self.predict_button = PushButton(text="Predict")
        self.candidate = ComboBox(label="candidate (N)", choices=self._candidate_labels)
        self.accept_button = PushButton(text="Accept (A)")
        self.undo_button = PushButton(text="Undo (Z)")
        self.clear_button = PushButton(text="Clear prompts")
        self.propagate_button = PushButton(
            text="Propagate last object", tooltip="Follow the last accepted object through the "
            "stack axis below (z: a volume, t: tracking), as one object id")
        self.propagate_axis = ComboBox(label="through axis", choices=self._stack_axis_choices)
        self.status = Label(value=READY)
        self.extend([
            self.image, *self.model.widgets, self.store,
            Container(widgets=[self.embed_button, self.cancel_button], layout="horizontal",
                      labels=False), self.positive, self.multimask,
            self.auto_predict, self.overwrite_labels, self.predict_button, self.candidate,
            Container(widgets=[self.accept_button, self.undo_button], layout="horizontal",
                      labels=False), self.clear_button, self.propagate_axis,
            self.propagate_button, self.status,
        ])
        self.layers = PromptLayers(napari_viewer, on_change=self._prompts_changed, keys={
            "a": self.accept, "z": self.undo, "n": self.next_candidate,
            "t": self.toggle_positive})
        self.image.changed.connect(self._image_changed)
        self.positive.changed.connect(self.layers.set_positive)
        self.predict_button.changed.connect(lambda: self.predict(explicit=True))
        self.embed_button.changed.connect(self.embed_all)
        self.cancel_button.changed.connect(self.cancel)
        self.candidate.changed.connect(self._show_selected)
        self.accept_button.changed.connect(self.accept)
        self.undo_button.changed.connect(self.undo)
        self.clear_button.changed.connect(self.clear_prompts)
        self.propagate_button.changed.connect(self.propagate)
        napari_viewer.layers.events.inserted.connect(self._layer_inserted)
        napari_viewer.dims.events.current_step.connect(self._dims_changed)
        self._pick_image(L.preferred_layer(napari_viewer, _image_type(), OWN_LAYERS))
        self._image_changed(self.image.value)

    def _pick_image(self, layer: Any) -> None:
        """Make ``layer`` the widget's image when the choices hold it."""
        if layer is None:
            return
        self.image.reset_choices()
        if layer in list(self.image.choices) and self.image.value is not layer:
            self.image.value = layer

    def _layer_inserted(self, event: Any) -> None:
        """A newly opened image becomes the one prompted, with the points layer active.

        napari makes each inserted layer active after this event, so the points
        layer is re-activated once the insertion is over (else the first click
        would pan instead of adding a prompt).
        """
        layer = event.value
        if not isinstance(layer, _image_type()) or layer.name in OWN_LAYERS:
            return
        from qtpy.QtCore import QTimer

        def adopt() -> None:
            if layer in self._viewer.layers and not self.busy:
                self._pick_image(layer)
                if self.image.value is layer:
                    self.layers.attach(layer, positive=self.positive.value)

        QTimer.singleShot(0, adopt)

    @property
    def points_layer(self) -> napari.layers.Points | None:
        return self.layers.points

    @property
    def shapes_layer(self) -> napari.layers.Shapes | None:
        return self.layers.shapes

    @property
    def busy(self) -> bool:
        return self._task is not None and self._task.running

    def _stack_axis_choices(self, *_: Any) -> list[tuple[str, int]]:
        """The stack axes of the image ("z (axis 0)"), as positions in a plane index."""
        image = self.image.value
        if image is None:
            return []
        axes = S.image_axes(image)
        return [(f"{axes.axes[a]} (axis {a})", i) for i, a in enumerate(axes.stack_axes)]

    def _dims_changed(self, *_: Any) -> None:
        """Prompts belong to one plane: scrolling to another clears them."""
        image = self.image.value
        if image is None or not S.is_stack(image):
            return
        if S.shown_plane(self._viewer, image) != self._plane and (
                not self.prompts().empty or self.candidates is not None):
            self.clear_prompts()
            self.status.value = "another plane: prompts cleared"

    def _image_changed(self, image: napari.layers.Image | None) -> None:
        self._engine = self._engine_key = None
        self._engines.clear()
        self.propagate_axis.reset_choices()
        self._set_candidates(None)
        if image is not None:
            self.layers.attach(image, positive=self.positive.value)

    def _prompts_changed(self, event: Any = None) -> None:
        action = str(getattr(event, "action", "")).lower()
        if action.endswith(("adding", "removing", "changing")):
            return  # wait for the completed "added"/"removed"/"changed" event
        if self.auto_predict.value:
            self.predict()

    def config(self) -> InteractiveConfig:
        return InteractiveConfig.from_widget(
            self, model=self.model.model_choice(), tiling=self.model.tiling_choice())

    def prompts(self) -> PromptSet:
        """The current prompts in the image's pixel frame (empty without an image)."""
        image = self.image.value
        if image is None:
            return PromptSet()
        return L.prompts_from_layers(image, self.points_layer, self.shapes_layer)

    def predict(self, *_: Any, explicit: bool = False) -> Task | None:
        """Run a prediction for the current prompts in a worker; the last change wins.

        Points outside the image (and a box entirely outside it) are removed
        with a message, so that they do not make every later prompt fail.
        """
        image = self.image.value
        if image is None:
            self.status.value = "no image layer: open an image or choose one above"
            return None
        outside = self._drop_outside(image)
        prompts = self.prompts()
        if prompts.empty:
            self._set_candidates(None)
            if outside:
                self.status.value = outside
            elif explicit:
                self.status.value = "nothing to predict: add a point or draw a box first"
            return None
        if self.busy:
            self._pending = True
            return self._task
        try:
            config = self.config()
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        plane = S.shown_plane(self._viewer, image)
        key = (id(image), config.model, config.tiling, config.store, plane)
        if key != self._engine_key:
            self._engine, self._engine_key = self._engines.get(key), key
        self._plane = plane
        source = S.plane_source(image, plane) if plane else L.raster_source(image)
        self.status.value = (outside + "; " if outside else "") + "predicting..."
        self.cancel_button.enabled = True
        self._task = Task(lambda: self._predict_gen(source, config, prompts),
                          on_done=self._set_candidates, on_finish=self._predict_finished,
                          on_event=lambda e: setattr(self.status, "value", describe(e)),
                          on_activity=self._activity, desc="SAM prompt")
        return self._task

    def _drop_outside(self, image: Any) -> str:
        """Remove points outside ``image`` (and a box that misses it); what was removed."""
        height, width = L.image_shape(image)
        prompts = self.prompts()
        xy = prompts.points_xy
        out = np.flatnonzero((xy[:, 0] < -0.5) | (xy[:, 0] >= width - 0.5)
                             | (xy[:, 1] < -0.5) | (xy[:, 1] >= height - 0.5))
        said = []
        if len(out):
            self.layers.remove_points(out.tolist())
            said.append(f"{len(out)} point(s) outside the image removed")
        box = prompts.box_xyxy
        if box is not None and (box[2] < -0.5 or box[0] >= width - 0.5 or box[3] < -0.5
                                or box[1] >= height - 0.5):
            self.layers.remove_last_shape()
            said.append("a box outside the image removed")
        return "; ".join(said)

    def _activity(self, activity: Any) -> None:
        if activity.kind == "encoder":
            self.status.value = f"embedding this tile: {activity.fraction:.0%} (Cancel stops)"

    def cancel(self, *_: Any) -> None:
        """Stop the running prediction or embedding (within one encoder block)."""
        if self.busy:
            self._pending = False
            self._task.cancel()
            self.status.value = "cancelling..."

    def _predict_gen(self, source: Any, config: InteractiveConfig, prompts: PromptSet):
        from napari_sam._widgets.engine import open_prompt_engine, predict_candidates

        if self._engine is None:
            model = self._models.get(config.model)
            if self._plane:  # a plane of a stack: kept in memory, and in its plane store
                self._engine = S.plane_engine(source, self._plane, model, config)
            else:
                self._engine = open_prompt_engine(source, model, config)
            self._engines[self._engine_key] = self._engine
            while len(self._engines) > PLANE_ENGINES:
                self._engines.popitem(last=False)
        self._no_candidate_reason = on_nodata(self._engine, prompts)
        if self._no_candidate_reason:
            return no_candidates()
        return (yield from predict_candidates(self._engine, prompts, multimask=config.multimask))

    def embed_all(self, *_: Any) -> Task | None:
        """Embed every tile into the chosen store in a worker (Cancel stops; it resumes)."""
        image = self.image.value
        if image is None or self.busy:
            self.status.value = ("no image layer: open an image or choose one above"
                                 if image is None else "busy: wait, or press Cancel")
            return None
        config, source = self.config(), L.raster_source(image)
        self.cancel_button.enabled = True
        self._task = Task(lambda: self._embed_gen(source, config), on_done=self._embedded,
                          on_finish=self._predict_finished,
                          on_event=lambda e: setattr(self.status, "value", describe(e)),
                          desc="SAM embed")
        return self._task

    def _embed_gen(self, source: Any, config: InteractiveConfig):
        from napari_sam._widgets.engine import embed_gen

        return (yield from embed_gen(source, self._models.get(config.model), config))

    def _embedded(self, store: Any) -> None:
        self._engine = self._engine_key = None  # the next prompt reads the store
        counts = store.counts()
        self.status.value = (f"{counts['done']} of {counts['total']} tiles embedded in "
                             f"{Path(store.path).name}")

    def _predict_finished(self, task: Task) -> None:
        self.cancel_button.enabled = False
        if task.state in ("failed", "cancelled"):
            self.status.value = f"{task.state}: {task.error}" if task.error else task.state
        if self._pending:
            self._pending = False
            self.predict()

    def _set_candidates(self, candidates: Candidates | None) -> None:
        self.candidates = candidates
        self.candidate.reset_choices()  # choices come from _candidate_labels
        choices = self._candidate_labels()
        if choices:
            self.candidate.value = choices[0]
            self.status.value = f"{len(choices)} candidate(s); A accepts, N shows the next"
        elif candidates is not None:
            self.status.value = f"no candidate: {self._no_candidate_reason or 'nodata?'}"
        elif not self.busy:
            self.status.value = READY
        self._show_selected()

    def _candidate_labels(self, *_: Any) -> list[str]:
        return self.candidates.labels() if self.candidates is not None else []

    def selected_index(self) -> int | None:
        """Index (into ``candidates.masks``) of the candidate shown, or None."""
        choices = self._candidate_labels()
        if self.candidate.value not in choices:
            return None
        return self.candidates.order[choices.index(self.candidate.value)]

    def _show_selected(self, *_: Any) -> None:
        if self.image.value is not None:
            self.layers.show(self.image.value, self.candidates, self.selected_index())

    def next_candidate(self) -> None:
        """Show the next candidate (in decreasing score order, wrapping around)."""
        choices = self._candidate_labels()
        if choices:
            rank = choices.index(self.candidate.value) if self.candidate.value in choices else -1
            self.candidate.value = choices[(rank + 1) % len(choices)]

    def toggle_positive(self) -> None:
        """Flip the sign of the next points; in select mode, of the selected points."""
        if not self.layers.flip_selected():
            self.positive.value = not self.positive.value

    def accept(self, *_: Any) -> int:
        """Write the shown candidate into "SAM labels" with a new id; clear the prompts."""
        index, image = self.selected_index(), self.image.value
        if index is None or image is None or self.busy:
            self.status.value = ("no image layer: open an image or choose one above"
                                 if image is None else "busy: wait, or press Cancel"
                                 if self.busy else "nothing to accept: no candidate shown "
                                 "(add a point or draw a box)")
            return 0
        engine = self._engine
        fallback = (lambda: engine.raster.georeference()) if engine is not None else None
        new_id = self.layers.editor(image, fallback).paste(
            self.candidates.masks[index], self.candidates.offset,
            overwrite=self.overwrite_labels.value, plane=self._plane)
        if new_id:
            self._last_accepted = (image, self._plane, new_id, self.candidates, index)
        self.clear_prompts()
        self.status.value = f"accepted object {new_id}" if new_id else "nothing new to accept"
        return new_id

    def propagate(self, *_: Any) -> Task | None:
        """Follow the last accepted object through the chosen stack axis, in a worker.

        Each plane reached gets the object's id (one 3D object, one undo step);
        progress per plane, Cancel stops after the current plane.
        """
        image = self.image.value
        if image is None or not S.is_stack(image):
            self.status.value = ("no image layer: open an image or choose one above"
                                 if image is None else "propagation needs an image with a z "
                                 "or t axis")
            return None
        if self.busy:
            self.status.value = "busy: wait, or press Cancel"
            return None
        if self._last_accepted is None or self._last_accepted[0] is not image:
            self.status.value = "accept an object on this image first, then propagate it"
            return None
        _, plane, label_id, candidates, index = self._last_accepted
        axis = self.propagate_axis.value if self.propagate_axis.value is not None else 0
        config = self.config()
        mask = candidates.masks[index]
        rows, cols = np.nonzero(mask)
        from napari_sam.core.tiling.window import Window

        y0, x0 = int(rows.min()), int(cols.min())
        first = (Window(candidates.offset[0] + y0, candidates.offset[1] + x0,
                        int(rows.max()) - y0 + 1, int(cols.max()) - x0 + 1),
                 mask[y0:rows.max() + 1, x0:cols.max() + 1])
        size = S.image_axes(image).stack_shape[axis]
        self.cancel_button.enabled = True
        self.status.value = "propagating..."
        self._task = Task(
            lambda: self._propagate_gen(image, config, plane, first, axis, size,
                                        float(candidates.scores[index])),
            on_done=lambda found: self._propagated(image, label_id, plane, found),
            on_finish=self._predict_finished,
            on_event=lambda e: setattr(self.status, "value", describe(e)),
            on_activity=self._activity, desc="SAM propagate")
        return self._task

    def _propagate_gen(self, image: Any, config: InteractiveConfig, plane: tuple, first: Any,
                       axis: int, size: int, score: float):
        from napari_sam.core.prompt.propagate import propagate

        model = self._models.get(config.model)

        def predictor_for(index: tuple) -> Any:
            key = (id(image), config.model, config.tiling, config.store, tuple(index))
            if key not in self._engines:
                self._engines[key] = S.plane_engine(S.plane_source(image, index), index, model,
                                                   config)
                while len(self._engines) > PLANE_ENGINES:
                    self._engines.popitem(last=False)
            return self._engines[key]

        return (yield from propagate(predictor_for, plane, first, axis=axis, size=size,
                                     first_score=score))

    def _propagated(self, image: Any, label_id: int, start: tuple, found: dict) -> None:
        items = [(index, mask, (window.y0, window.x0)) for index, (window, mask)
                 in found.items() if index != tuple(start)]
        if items:
            self.layers.editor(image).paste_planes(items, label_id=label_id,
                                                   overwrite=self.overwrite_labels.value)
        self.status.value = (f"object {label_id} on {len(found)} plane(s) "
                             f"({min(i[self.propagate_axis.value or 0] for i in found)}.."
                             f"{max(i[self.propagate_axis.value or 0] for i in found)})")

    def undo(self, *_: Any) -> int:
        """Remove the last accepted object (restoring what it covered); its id, or 0."""
        used = self.layers.undo()
        self.status.value = f"removed object {used}" if used else "nothing to undo"
        return used

    def clear_prompts(self, *_: Any) -> None:
        self.layers.clear()
        self._set_candidates(None)


def _image_type() -> type:
    from napari.layers import Image

    return Image
