"""Layer handling shared by the widgets: frames, prompts, labels editing.

Every layer the widgets create is aligned to the image layer: its data
coordinates are the image's pixel coordinates (row, column), so a click on the
canvas lands in raster pixels whatever the image's georeferenced affine is.
Layers made elsewhere (a Shapes layer read from a GeoPackage, say) are mapped
through world coordinates into the image's pixel frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sam._widgets.state import Candidates, PromptSet

if TYPE_CHECKING:
    import napari.layers

GEO_KEY = "napari_sam"  # layer.metadata[GEO_KEY]: {"transform": [a..f], "crs": WKT, ...}
POSITIVE_COLOR = "lime"
NEGATIVE_COLOR = "red"


def data_to_world_matrix(layer: napari.layers.Layer) -> np.ndarray:
    """The (3, 3) homogeneous matrix taking a 2D layer's data (row, col) to world."""
    if layer.ndim != 2:
        raise ValueError(f"layer {layer.name!r} has {layer.ndim} dimensions; only 2D is supported")
    origin = np.asarray(layer.data_to_world([0.0, 0.0]), dtype=float)
    e_row = np.asarray(layer.data_to_world([1.0, 0.0]), dtype=float) - origin
    e_col = np.asarray(layer.data_to_world([0.0, 1.0]), dtype=float) - origin
    matrix = np.eye(3)
    matrix[:2, 0] = e_row
    matrix[:2, 1] = e_col
    matrix[:2, 2] = origin
    return matrix


def aligned_affine(image: napari.layers.Layer, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Affine for a new layer whose pixel (0, 0) sits on the image's pixel ``offset``."""
    shift = np.eye(3)
    shift[:2, 2] = offset
    return data_to_world_matrix(image) @ shift


def to_image_pixels(image: napari.layers.Layer, layer: napari.layers.Layer,
                    coords: np.ndarray) -> np.ndarray:
    """Map (N, 2) data coordinates of ``layer`` to (N, 2) (row, col) pixels of ``image``."""
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    if len(coords) == 0:
        return coords
    to_world = data_to_world_matrix(layer)
    to_pixels = np.linalg.inv(data_to_world_matrix(image))
    homog = np.c_[coords, np.ones(len(coords))]
    return (to_pixels @ to_world @ homog.T).T[:, :2]


def level0(layer: napari.layers.Layer) -> Any:
    """The full-resolution array of an Image or Labels layer (multiscale or not)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def image_shape(image: napari.layers.Image) -> tuple[int, int]:
    """(height, width) of the image's full-resolution level."""
    data = level0(image)
    return int(data.shape[0]), int(data.shape[1])


def raster_source(image: napari.layers.Image) -> Any:
    """What core should open for ``image``: its file when napari read one, else its array.

    Full-resolution level for multiscale layers; (y, x) or (y, x, bands) arrays.
    """
    geo = (image.metadata or {}).get(GEO_KEY) or {}
    path = geo.get("path") or getattr(image.source, "path", None)
    if path:
        return str(path)
    return level0(image)


def new_points_layer(image: napari.layers.Image, name: str) -> napari.layers.Points:
    """An empty Points layer in the image's pixel frame with a boolean ``positive`` feature."""
    from napari.layers import Points

    layer = Points(
        np.zeros((0, 2)),
        ndim=2,
        name=name,
        affine=aligned_affine(image),
        features={"positive": np.zeros((0,), dtype=bool)},
        face_color="positive",
        face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
        border_color="white",
        size=max(4.0, min(image_shape(image)) / 40),
        canvas_size_limits=(8, 24),  # screen pixels: visible at any zoom on any raster size
    )
    layer.feature_defaults["positive"] = True
    return layer


def new_shapes_layer(image: napari.layers.Image, name: str) -> napari.layers.Shapes:
    """An empty Shapes layer for box and polygon prompts, in the image's pixel frame."""
    from napari.layers import Shapes

    return Shapes(
        ndim=2,
        name=name,
        affine=aligned_affine(image),
        edge_color="yellow",
        face_color="transparent",
        edge_width=max(1.0, min(image_shape(image)) / 256),
    )


def prompts_from_layers(image: napari.layers.Image, points: napari.layers.Points | None,
                        shapes: napari.layers.Shapes | None) -> PromptSet:
    """All points plus the last drawn shape (as a box, and its outline if a polygon).

    Points read ``features['positive']`` (missing means positive). A shape of
    any kind gives the box around it; polygons also keep their vertices.
    """
    points_xy = np.zeros((0, 2))
    labels = np.zeros((0,), dtype=np.int64)
    if points is not None and len(points.data):
        rc = to_image_pixels(image, points, points.data[:, -2:])
        points_xy = rc[:, ::-1].copy()
        if "positive" in points.features:
            labels = np.asarray(points.features["positive"], dtype=bool).astype(np.int64)
        else:
            labels = np.ones(len(rc), dtype=np.int64)
    box = polygon = None
    if shapes is not None and shapes.nshapes:
        verts_rc = to_image_pixels(image, shapes, np.asarray(shapes.data[-1])[:, -2:])
        xy = verts_rc[:, ::-1]
        box = np.r_[xy.min(axis=0), xy.max(axis=0)].astype(float)
        if shapes.shape_type[-1] == "polygon":
            polygon = xy.copy()
    return PromptSet(points_xy=points_xy, labels=labels, box_xyxy=box, polygon_xy=polygon)


def show_candidate(viewer: Any, image: napari.layers.Image, candidates: Candidates | None,
                   index: int, name: str) -> napari.layers.Labels | None:
    """Show candidate ``index`` (tile-local) in a Labels layer placed by its offset.

    The layer is reused when it exists; with no candidates it is emptied.
    """
    from napari.layers import Labels

    if candidates is None:
        mask, offset = np.zeros((1, 1), dtype=np.uint8), (0, 0)
    else:
        mask, offset = candidates.masks[index].astype(np.uint8), candidates.offset
    affine = aligned_affine(image, offset)
    layer = viewer.layers[name] if name in viewer.layers else None
    if layer is None:
        layer = Labels(mask, name=name, affine=affine, opacity=0.55)
        layer.colormap = _single_colour_map()
        viewer.layers.append(layer)
    else:
        layer.data = mask
        layer.affine = affine
    return layer


def _single_colour_map() -> Any:
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: "magenta"})


class LabelEditor:
    """Paste accepted masks into a 2D Labels layer with new ids; undo in order.

    Ids are allocated from ``max(existing ids) + 1``. Each paste writes only the
    mask's pixels (and, unless ``overwrite``, only where the label is 0) and
    remembers what it replaced, so ``undo`` restores exactly the previous values.
    A single-scale layer is written through napari (its own undo history and
    partial refresh); a multiscale layer (a :class:`~napari_sam.core.io.sparse_labels.SparseLabels`
    pyramid, or any writable full-resolution level that keeps its other levels
    in step) is written at full resolution and refreshed.
    """

    def __init__(self, layer: napari.layers.Labels) -> None:
        self.layer = layer
        data = level0(layer)  # np.max of a SparseLabels reads only its allocated chunks
        self._next_id = int(np.max(data)) + 1 if np.size(data) else 1
        self._history: list[tuple[tuple[np.ndarray, np.ndarray], np.ndarray, int]] = []

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    @property
    def next_id(self) -> int:
        return self._next_id

    def paste(self, mask: np.ndarray, offset: tuple[int, int], *, overwrite: bool = False) -> int:
        """Write ``mask`` (h, w bool) at pixel ``offset`` (row, col) with a new id.

        Returns the id used, or 0 when no pixel was written.
        """
        data = level0(self.layer)
        height, width = data.shape[-2:]
        rows, cols = np.nonzero(mask)
        rows = rows + int(offset[0])
        cols = cols + int(offset[1])
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        index = (rows[inside], cols[inside])
        previous = np.array(data[index], copy=True)
        if not overwrite:
            free = previous == 0
            index = (index[0][free], index[1][free])
            previous = previous[free]
        if index[0].size == 0:
            return 0
        new_id = self._next_id
        self._write(index, new_id)
        self._history.append((index, previous, new_id))
        self._next_id += 1
        self.layer.selected_label = new_id
        return new_id

    def undo(self) -> int:
        """Restore the pixels of the last paste; return its id (0 when nothing to undo)."""
        if not self._history:
            return 0
        index, previous, used = self._history.pop()
        self._write(index, previous)
        if used == self._next_id - 1:
            self._next_id = used
        return used

    def _write(self, index: tuple[np.ndarray, np.ndarray], value: Any) -> None:
        if not getattr(self.layer, "multiscale", False):
            self.layer.data_setitem(index, value)
        else:  # napari cannot edit multiscale labels: write level 0, which updates the rest
            level0(self.layer)[index] = value
            refresh_levels(self.layer)


def refresh_levels(layer: napari.layers.Layer) -> None:
    """Redraw a layer whose arrays changed in place, multiscale levels included.

    napari (0.9 here) keeps the coarsest level of a 2D multiscale layer as a
    cached numpy copy, dropped only when the data is replaced; drop it here too.
    """
    reset = getattr(layer, "_reset_thumbnail_level_data", None)
    if getattr(layer, "multiscale", False) and callable(reset):
        reset()
    layer.refresh()


def georeference(layer: napari.layers.Layer) -> dict[str, Any]:
    """``{"transform": [a, b, c, d, e, f] or None, "crs": WKT/str or None}`` from metadata.

    Reads ``metadata["napari_sam"]`` (what this plugin writes), else top-level
    ``transform``/``crs`` keys (what a reader may write). Missing values are None:
    outputs are then in pixel coordinates.
    """
    meta = dict(layer.metadata or {})
    geo = dict(meta.get(GEO_KEY) or {})
    transform = geo.get("transform", meta.get("transform"))
    crs = geo.get("crs", meta.get("crs"))
    if transform is not None:
        transform = [float(v) for v in tuple(transform)[:6]]
    if crs is not None and not isinstance(crs, str):
        crs = crs.to_wkt() if hasattr(crs, "to_wkt") else str(crs)
    return {"transform": transform, "crs": crs or None}


def set_georeference(layer: napari.layers.Layer, geo: dict[str, Any]) -> None:
    """Store ``geo`` (as returned by :func:`georeference`) in ``layer.metadata``."""
    meta = dict(layer.metadata or {})
    shape = list(np.shape(level0(layer))[:2]) if hasattr(layer, "data") else None
    meta[GEO_KEY] = {"transform": geo.get("transform"), "crs": geo.get("crs"), "shape": shape}
    layer.metadata = meta


def crs_name(geo: dict[str, Any]) -> str:
    """A short name for the CRS in ``geo`` ("EPSG:32618"), or "none (pixels)"."""
    crs = geo.get("crs")
    if not crs:
        return "none (pixels)"
    try:
        from rasterio.crs import CRS

        parsed = CRS.from_user_input(crs)
        epsg = parsed.to_epsg()
        return f"EPSG:{epsg}" if epsg else parsed.to_string()[:40]
    except Exception:  # noqa: BLE001 - a label only; the writers validate the CRS
        return str(crs)[:40]
