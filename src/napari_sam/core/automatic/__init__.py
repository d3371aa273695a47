"""Automatic segmentation of a whole raster: the global point grid, per-tile
decoding, candidates and their cross-tile deduplication, seam stitching,
assembly into ids, painting labels, dask execution, and segmenting a file."""
