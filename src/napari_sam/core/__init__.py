"""Tiling, embedding cache, prompts, automatic generation, vectorisation.

No Qt and no napari import here: the GUI and the CLI are thin shells over this.
"""
