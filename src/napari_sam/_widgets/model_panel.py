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

from magicgui.widgets import ComboBox, Container, FileEdit, SpinBox

from napari_sam._widgets.state import ModelChoice, TilingChoice

DEVICES = ("auto", "cpu", "cuda", "mps")
ModelFactory = Callable[[ModelChoice], Any]


def model_names() -> list[str]:
    """Registered model names, the embedded default first."""
    from sam_model import list_models

    names = list(list_models())
    return sorted(names, key=lambda n: (n != "sam_tiny", n))


def build_model(choice: ModelChoice) -> Any:
    """Load the network for ``choice`` (in eval mode) on its device."""
    from napari_sam.core.device import pick_device
    from sam_model import build_sam

    return build_sam(choice.name, choice.checkpoint, device=pick_device(choice.device))


class ModelCache:
    """Networks loaded by one widget, keyed by :class:`ModelChoice`."""

    def __init__(self, factory: ModelFactory | None = None) -> None:
        self._factory = factory or build_model
        self._models: dict[ModelChoice, Any] = {}

    def get(self, choice: ModelChoice) -> Any:
        """The network for ``choice``, loading it on first use (call from a worker)."""
        model = self._models.get(choice)
        if model is None:
            model = self._factory(choice)
            self._models = {choice: model}  # keep one network in memory at a time
        return model


class ModelPanel(Container):
    """Model name, checkpoint, device, tile size and overlap."""

    def __init__(self, *, names: list[str] | None = None, tile_size: int = 1024,
                 overlap: int = 128) -> None:
        super().__init__(labels=True)
        names = names or model_names()
        self.model_name = ComboBox(label="model", choices=names, value=names[0],
                             tooltip="Network to run; sam_tiny is embedded and needs no download")
        self.checkpoint = FileEdit(label="checkpoint", mode="r", value="",
                                   filter="*.pt *.pth",
                                   tooltip="Optional official SAM/MobileSAM checkpoint file")
        self.device = ComboBox(label="device", choices=DEVICES, value="auto")
        self.tile_size = SpinBox(label="tile (px)", min=64, max=8192, step=64, value=tile_size,
                                 tooltip="Tile side in raster pixels (the model's input size)")
        self.overlap = SpinBox(label="overlap (px)", min=0, max=4096, step=16, value=overlap)
        self.extend([self.model_name, self.checkpoint, self.device, self.tile_size, self.overlap])
        self.margins = (0, 0, 0, 0)

    def model_choice(self) -> ModelChoice:
        return ModelChoice.from_widget(self)

    def tiling_choice(self) -> TilingChoice:
        return TilingChoice.from_widget(self)
