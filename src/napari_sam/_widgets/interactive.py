"""Interactive segmentation: click or draw prompts, pick a candidate, accept it.

Prompts live in two layers aligned to the image's pixel frame: "SAM points"
(a boolean ``positive`` feature; green positive, red negative) and "SAM boxes"
(rectangles or polygons; the last one drawn is the box prompt). Each change
runs a prediction in a worker thread: core picks the tile that holds the
prompt (embedding it first when needed), so clicks anywhere on a raster of any
size work. The candidates appear in "SAM candidate" with their predicted IoU;
accepting writes the chosen one into "SAM labels" with a new id.

Keys: A accept, Z undo, N next candidate, T toggle positive/negative.
"""

from __future__ import annotations

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
from napari_sam._widgets.model_panel import ModelCache, ModelFactory, ModelPanel
from napari_sam._widgets.state import Candidates, InteractiveConfig, PromptSet
from napari_sam._widgets.worker import Task, describe

if TYPE_CHECKING:
    import napari

POINTS, BOXES, CANDIDATE, LABELS = "SAM points", "SAM boxes", "SAM candidate", "SAM labels"


class InteractiveWidget(Container):
    """Dock widget for prompt-based segmentation of the selected image layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, *,
                 model_factory: ModelFactory | None = None,
                 model_names: list[str] | None = None, tile_size: int = 0,
                 overlap: int = -1) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._models = ModelCache(model_factory)
        self._engine: Any = None
        self._engine_key: tuple | None = None
        self._task: Task | None = None
        self._pending = False
        self._clearing = False
        self._editor: L.LabelEditor | None = None
        self.candidates: Candidates | None = None

        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.model = ModelPanel(names=model_names, tile_size=tile_size, overlap=overlap)
        self.store = FileEdit(label="embeddings", mode="d", value="",
                              tooltip="Optional store from `napari-sam embed` for this image "
                                      "and model; empty: embed tiles as they are needed")
        self.positive = CheckBox(text="positive points (T toggles)", value=True)
        self.multimask = CheckBox(text="three candidates per prompt", value=True)
        self.auto_predict = CheckBox(text="predict on every change", value=True)
        self.overwrite_labels = CheckBox(text="accept over existing labels", value=False)
        self.predict_button = PushButton(text="Predict")
        self.candidate = ComboBox(label="candidate (N)", choices=self._candidate_labels)
        self.accept_button = PushButton(text="Accept (A)")
        self.undo_button = PushButton(text="Undo (Z)")
        self.clear_button = PushButton(text="Clear prompts")
        self.status = Label(value="add a point or draw a box")
        self.extend([
            self.image, *self.model.widgets, self.store, self.positive, self.multimask,
            self.auto_predict, self.overwrite_labels, self.predict_button, self.candidate,
            Container(widgets=[self.accept_button, self.undo_button], layout="horizontal",
                      labels=False), self.clear_button, self.status,
        ])
        self.image.changed.connect(self._image_changed)
        self.positive.changed.connect(self._positive_changed)
        self.predict_button.changed.connect(self.predict)
        self.candidate.changed.connect(self._show_selected)
        self.accept_button.changed.connect(self.accept)
        self.undo_button.changed.connect(self.undo)
        self.clear_button.changed.connect(self.clear_prompts)
        self._bind_keys(napari_viewer)
        self._image_changed(self.image.value)

    def _bind_keys(self, target: Any) -> Any:
        """A accept, Z undo, N next candidate, T toggle: on the viewer and on our layers
        (a layer's own keys, such as Z for pan/zoom, would otherwise win)."""
        for key, action in (("a", self.accept), ("z", self.undo), ("n", self.next_candidate),
                            ("t", self.toggle_positive)):
            target.bind_key(key, _ignore_arg(action), overwrite=True)
        return target

    # layers ---------------------------------------------------------------
    def _layer(self, name: str) -> Any:
        return self._viewer.layers[name] if name in self._viewer.layers else None

    @property
    def points_layer(self) -> napari.layers.Points | None:
        return self._layer(POINTS)

    @property
    def shapes_layer(self) -> napari.layers.Shapes | None:
        return self._layer(BOXES)

    @property
    def labels_layer(self) -> napari.layers.Labels | None:
        return self._layer(LABELS)

    def _image_changed(self, image: napari.layers.Image | None) -> None:
        self._engine = self._engine_key = None
        self._set_candidates(None)
        if image is None:
            return
        points, shapes = self.points_layer, self.shapes_layer
        if points is None:
            points = self._bind_keys(self._viewer.add_layer(L.new_points_layer(image, POINTS)))
            points.events.data.connect(self._prompts_changed)
        if shapes is None:
            shapes = self._bind_keys(self._viewer.add_layer(L.new_shapes_layer(image, BOXES)))
            shapes.events.data.connect(self._prompts_changed)
        for layer in (points, shapes):
            layer.affine = L.aligned_affine(image)
        self._positive_changed(self.positive.value)
        self._keep_points_active()
        points.mode = "add"

    def _keep_points_active(self) -> None:
        """Re-select the points layer after adding a layer, so clicks keep adding prompts."""
        if self.points_layer is not None:
            self._viewer.layers.selection.active = self.points_layer

    def _positive_changed(self, value: bool) -> None:
        points = self.points_layer
        if points is not None:
            points.feature_defaults["positive"] = bool(value)

    def _prompts_changed(self, event: Any = None) -> None:
        if self._clearing:
            return
        action = getattr(event, "action", None)
        if str(action).lower().endswith(("adding", "removing", "changing")):
            return  # wait for the completed "added"/"removed"/"changed" event
        if self.auto_predict.value:
            self.predict()

    # actions --------------------------------------------------------------
    def config(self) -> InteractiveConfig:
        return InteractiveConfig.from_widget(
            self, model=self.model.model_choice(), tiling=self.model.tiling_choice())

    def prompts(self) -> PromptSet:
        image = self.image.value
        if image is None:
            return PromptSet()
        return L.prompts_from_layers(image, self.points_layer, self.shapes_layer)

    @property
    def busy(self) -> bool:
        return self._task is not None and self._task.running

    def predict(self, *_: Any) -> Task | None:
        """Run a prediction for the current prompts in a worker; the last change wins."""
        image, prompts = self.image.value, self.prompts()
        if image is None or prompts.empty:
            self._set_candidates(None)
            return None
        if self.busy:
            self._pending = True
            return self._task
        config = self.config()
        key = (id(image), config.model, config.tiling, config.store)
        if key != self._engine_key:
            self._engine, self._engine_key = None, key
        source = L.raster_source(image)
        self.status.value = "predicting..."
        self._task = Task(lambda: self._predict_gen(source, config, prompts),
                          on_done=self._set_candidates, on_finish=self._predict_finished,
                          on_event=lambda e: setattr(self.status, "value", describe(e)),
                          desc="SAM prompt")
        return self._task

    def _predict_gen(self, source: Any, config: InteractiveConfig, prompts: PromptSet):
        from napari_sam._widgets.engine import open_prompt_engine, predict_candidates

        if self._engine is None:
            model = self._models.get(config.model)
            self._engine = open_prompt_engine(source, model, config)
        return (yield from predict_candidates(self._engine, prompts, multimask=config.multimask))

    def _predict_finished(self, task: Task) -> None:
        if task.state == "failed":
            self.status.value = f"prediction failed: {task.error}"
        if self._pending:
            self._pending = False
            self.predict()

    def _set_candidates(self, candidates: Candidates | None) -> None:
        self.candidates = candidates
        self.candidate.reset_choices()  # choices come from _candidate_labels
        choices = self._candidate_labels()
        if choices:
            self.candidate.value = choices[0]
        if candidates is not None:
            self.status.value = f"{len(choices)} candidate(s); A accepts, N shows the next"
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
        image, index = self.image.value, self.selected_index()
        if image is None or (index is None and self._layer(CANDIDATE) is None):
            return
        created = CANDIDATE not in self._viewer.layers
        layer = L.show_candidate(self._viewer, image,
                                 self.candidates if index is not None else None, index or 0,
                                 CANDIDATE)
        if created:
            self._bind_keys(layer)
            self._keep_points_active()

    def next_candidate(self) -> None:
        choices = self._candidate_labels()
        if choices:
            rank = choices.index(self.candidate.value) if self.candidate.value in choices else -1
            self.candidate.value = choices[(rank + 1) % len(choices)]

    def toggle_positive(self) -> None:
        """Flip the sign of the next points; in select mode, of the selected points."""
        points = self.points_layer
        selected = sorted(points.selected_data) if points is not None else []
        if selected and points.mode == "select":
            flags = np.asarray(points.features["positive"], dtype=bool).copy()
            flags[selected] = ~flags[selected]
            points.features["positive"] = flags
            points.refresh_colors()
            self._prompts_changed()
        else:
            self.positive.value = not self.positive.value

    def _labels_editor(self) -> L.LabelEditor:
        labels = self.labels_layer
        if labels is None:
            from napari.layers import Labels

            image = self.image.value
            data = np.zeros(L.image_shape(image), dtype=np.uint32)
            labels = self._viewer.add_layer(
                Labels(data, name=LABELS, affine=L.aligned_affine(image), opacity=0.6))
            geo = L.georeference(image)
            if geo["transform"] is None and self._engine is not None:
                geo = self._engine.raster.georeference()
            L.set_georeference(labels, geo)
            self._bind_keys(labels)
            self._keep_points_active()
            self._viewer.layers.move(self._viewer.layers.index(labels),
                                     self._viewer.layers.index(self.points_layer))
        if self._editor is None or self._editor.layer is not labels:
            self._editor = L.LabelEditor(labels)
        return self._editor

    def accept(self, *_: Any) -> int:
        """Write the shown candidate into "SAM labels" with a new id; clear the prompts."""
        index = self.selected_index()
        if index is None or self.busy:
            return 0
        new_id = self._labels_editor().paste(self.candidates.masks[index],
                                             self.candidates.offset,
                                             overwrite=self.overwrite_labels.value)
        self.status.value = f"accepted object {new_id}" if new_id else "nothing new to accept"
        self.clear_prompts()
        return new_id

    def undo(self, *_: Any) -> int:
        used = self._editor.undo() if self._editor is not None else 0
        self.status.value = f"removed object {used}" if used else "nothing to undo"
        return used

    def clear_prompts(self, *_: Any) -> None:
        self._clearing = True
        try:
            for layer in (self.points_layer, self.shapes_layer):
                if layer is not None and len(layer.data):
                    layer.selected_data = set(range(len(layer.data)))
                    layer.remove_selected()
        finally:
            self._clearing = False
        self._set_candidates(None)


def _ignore_arg(action):
    def call(_viewer_or_layer: Any) -> None:
        action()

    call.__name__ = call.__doc__ = action.__name__
    return call
