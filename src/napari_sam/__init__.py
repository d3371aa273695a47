"""napari-sam: Segment Anything for rasters of any size, in napari and from scripts.

The script API mirrors the command line (see ``napari-sam --help``). Heavy
imports happen on first use so that ``import napari_sam`` stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {  # public name -> "module:attribute", filled as features land
    "embed": "napari_sam.core.tiling.embed:embed",
    "prompt": "napari_sam.core.prompt.run:prompt",
    "segment": "napari_sam.core.automatic.run:segment",
    "vectorize": "napari_sam.core.vector.polygons:vectorize",
}


def __getattr__(name: str):
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'napari_sam' has no attribute {name!r}")
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


__all__ = sorted(_API)
