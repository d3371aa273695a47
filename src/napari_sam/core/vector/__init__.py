"""Where a mask becomes a polygon: labels rasters to valid polygons per object id."""
