"""napari dock widgets: interactive and automatic segmentation, export.

One widget per module; each gathers its inputs into a frozen config
(:mod:`~napari_sam._widgets.state`) and runs core's generators in a worker
thread (:mod:`~napari_sam._widgets.worker`) through the calls in
:mod:`~napari_sam._widgets.engine`. Nothing here holds an algorithm.
"""
