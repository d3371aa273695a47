"""Reading and writing: rasters (GeoRaster and its openers), labels, polygon files,
prompt files, sparse labels, segmentation output folders, atomic writes."""
