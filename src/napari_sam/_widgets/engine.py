"""The widgets' calls into core, each a generator of Progress events.

Widgets build a frozen config and a source (a file path or an array), then run
one of these in a worker thread (see :mod:`napari_sam._widgets.worker`). No
napari and no Qt here: this module is the seam between the GUI and core, and
it is tested without a viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_sam._widgets.state import ExportConfig
from napari_sam.core.progress import Progress, ProgressGen


def export_gen(labels: Any, geo: dict[str, Any], config: ExportConfig, *,
               attributes: Any = None) -> ProgressGen[list[Path]]:
    """Write ``labels`` ((h, w) integer array) and/or its polygons as ``config`` says.

    ``geo``: ``{"transform": [a..f] or None, "crs": WKT or None}``; labels keep
    it (GeoTIFF/zarr), polygons are written in its CRS (pixels without one,
    and always pixels for QuPath). ``attributes``: an object table with an
    ``id`` column joined onto the polygons. Returns the written paths.
    """
    from napari_sam.core.atomic import check_writable
    from napari_sam.core.labels_io import write_labels
    from napari_sam.core.vectorize import vectorize_to_file

    if not config.labels_path and not config.vectors_path:
        from napari_sam.errors import InputError

        raise InputError("export: choose a labels file and/or a polygons file")
    for path in (config.labels_path, config.vectors_path):
        if path:
            check_writable(path, config.overwrite)  # refuse before any work
    transform, crs = geo.get("transform"), geo.get("crs")
    written: list[Path] = []
    if config.labels_path:
        yield Progress("labels", 0, 1, Path(config.labels_path).name)
        written.append(write_labels(config.labels_path, labels, transform=transform, crs=crs,
                                    overwrite=config.overwrite))
        yield Progress("labels", 1, 1, Path(config.labels_path).name)
    if config.vectors_path:
        written.append((yield from vectorize_to_file(
            labels, config.vectors_path, fmt=config.vector_format,
            simplify=config.simplify or None, overwrite=config.overwrite,
            attributes=attributes, transform=transform, crs=crs)))
    return [Path(p) for p in written]

