"""The engine under the widgets and the command line, grouped by stage.

- :mod:`~napari_sam.core.io`: rasters, labels, polygon and prompt files, outputs.
- :mod:`~napari_sam.core.tiling`: windows, tile grid, normalisation, embedding store.
- :mod:`~napari_sam.core.prompt`: prompts anywhere on a raster to masks.
- :mod:`~napari_sam.core.automatic`: automatic segmentation of a whole raster.
- :mod:`~napari_sam.core.vector`: masks to polygons.

Beside them: :mod:`~napari_sam.core.progress` (long work as generators),
:mod:`~napari_sam.core.models` and :mod:`~napari_sam.core.device` (which model, where).
No Qt and no napari import here: the GUI and the CLI are thin shells over this.
"""
