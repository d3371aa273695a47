"""Model and tiling choice, shared by the interactive and automatic widgets.

``ModelPanel`` shows the model name, an optional checkpoint file, the device,
the tile size and overlap, and builds :class:`ModelChoice` /
:class:`TilingChoice` values. ``ModelCache`` keeps the networks a widget has
loaded (one per choice, owned by the widget: no global state); loading happens
in the widget's worker thread, never on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magicgui.widgets import ComboBox, FileEdit, SpinBox

from napari_sam._widgets.activity import watch_model
from napari_sam._widgets.state import ModelChoice, TilingChoice
from sam_model import DEFAULT_MODEL

DEVICES = ("auto", "cpu", "cuda", "mps")
ModelFactory = Callable[[ModelChoice], Any]


def model_names() -> list[str]:
    """Registered model names, the embedded default first."""
    from sam_model import list_models

    names = list(list_models())
    return sorted(names, key=lambda n: (n != DEFAULT_MODEL, n))


def build_model(choice: ModelChoice) -> Any:
    """Load the network for ``choice`` (eval mode, on its device, ``model_name`` set)."""
    from napari_sam.core.models import load_model

    return load_model(choice.name, choice.checkpoint, device=choice.device)


class ModelCache:
    """Networks loaded by one widget, keyed by :class:`ModelChoice`."""

    def __init__(self, factory: ModelFactory | None = None) -> None:
        self._factory = factory or build_model
        self._models: dict[ModelChoice, Any] = {}

    def get(self, choice: ModelChoice) -> Any:
        """The network for ``choice``, loading it on first use (call from a worker).

        Its encoder and decoder report progress to, and stop on cancel of, the
        widget task that runs them (:mod:`~napari_sam._widgets.activity`).
        """
        model = self._models.get(choice)
        if model is None:
            model = watch_model(self._factory(choice))
            self._models = {choice: model}  # keep one network in memory at a time
        return model


class ModelPanel:
    """Model name, checkpoint, device, tile size and overlap widgets.

    Not a container: a widget adds ``panel.widgets`` to its own labelled
    column so that every label lines up.
    """

    def __init__(self, *, names: list[str] | None = None, tile_size: int = 0,
                 overlap: int = -1) -> None:
        names = names or model_names()
        self.model_name = ComboBox(label="model", choices=names, value=names[0],
                                   tooltip="Network to run; sam_lite0 (the default) and sam_tiny are "
                                           "embedded, no download")
        self.checkpoint = FileEdit(label="checkpoint", mode="r", value="",
                                   filter="*.pt *.pth",
                                   tooltip="Optional official SAM/MobileSAM checkpoint file")
        self.device = ComboBox(label="device", choices=DEVICES, value="auto")
        self.tile_size = SpinBox(label="tile px (0: auto)", min=0, max=16384, step=64,
                                 value=tile_size,
                                 tooltip="Tile side in raster pixels; auto: the model's input")
        self.overlap = SpinBox(label="overlap (-1: auto)", min=-1, max=8192, step=16,
                               value=overlap,
                               tooltip="Tile overlap in raster pixels; auto: an eighth of a tile")
        self.widgets = [self.model_name, self.checkpoint, self.device, self.tile_size,
                        self.overlap]

    def model_choice(self) -> ModelChoice:
        return ModelChoice.from_widget(self)

    def tiling_choice(self) -> TilingChoice:
        return TilingChoice.from_widget(self)
