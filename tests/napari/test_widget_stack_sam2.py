"""With a SAM 2 model, "Propagate last object" follows the object with SAM 2's memory
(issue 16).

A tiny random SAM 2 (hiera_tiny layout at 128 px, perturbed weights, its
object-score head biased so the object stays); one click on plane 2 of a
5-plane stack, Accept, Propagate: the SAM 1 plane step is never used and the
object's id reaches planes on both sides of plane 2.
"""

from __future__ import annotations

import numpy as np
from sam2_tiny import tiny_sam2

from napari_sam._widgets.interactive import LABELS, InteractiveWidget
from napari_sam.core.prompt import propagate as P


def _stack(depth=5, side=96):
    rng = np.random.default_rng(0)
    stack = rng.normal(40, 6, (depth, side, side)).clip(0, 255).astype(np.uint8)
    for z in range(depth):
        stack[z, 30 + 2 * z:60 + 2 * z, 25 + 3 * z:60 + 3 * z] = 200
    return stack


def test_propagate_button_uses_sam2_memory(make_napari_viewer, wait_idle, monkeypatch):
    model = tiny_sam2()
    viewer = make_napari_viewer()
    viewer.add_image(_stack(), name="stack")
    widget = InteractiveWidget(viewer, model_factory=lambda choice: model,
                               model_names=["sam2.1_hiera_tiny"], tile_size=128, overlap=16)
    viewer.window.add_dock_widget(widget, name="SAM interactive")

    def no_sam1_step(*_a, **_k):
        raise AssertionError("the SAM 1 plane step was used for a SAM 2 model")

    monkeypatch.setattr(P, "step", no_sam1_step)
    viewer.dims.set_current_step(0, 2)
    widget.points_layer.add([49.0, 48.0])
    wait_idle(widget)
    assert widget.candidates is not None, widget.status.value
    assert widget.accept() == 1
    task = widget.propagate()
    wait_idle(widget, timeout=300000)
    assert task.state == "done", widget.status.value
    labels = viewer.layers[LABELS].data == 1
    planes = {int(z) for z in np.nonzero(labels.any(axis=(1, 2)))[0]}
    assert 2 in planes and {1, 3} <= planes, (planes, widget.status.value)
