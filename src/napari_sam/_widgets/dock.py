"""Dock widgets that scroll instead of growing the window.

napari docks a magicgui widget's ``native`` Qt widget, which for a scrollable
container is the inner widget holding the layout, not the scroll area around
it: the three docks of this plugin then asked for about 1400 px of height
and pushed the window (and its notifications) past a 1000 px screen. A
:class:`ScrollingDock` container hands napari its scroll area instead.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container


class ScrollingDock(Container):
    """A vertical, labelled, scrollable container whose ``native`` is its scroll area."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(labels=True, scrollable=True, **kwargs)

    @property
    def native(self) -> Any:
        return self.root_native_widget
