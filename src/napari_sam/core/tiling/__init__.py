"""Where a tile becomes an embedding: pixel windows, the tile grid, the contrast
stretch, the embedding store and the encoder run that fills it."""
