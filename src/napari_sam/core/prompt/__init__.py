"""Where a prompt becomes a mask: points, boxes and masks anywhere on a raster to
masks in raster coordinates, and ``napari-sam prompt`` over a prompt file."""
