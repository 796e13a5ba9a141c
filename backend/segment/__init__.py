"""Segmentation engine: any-size raster -> water mask, blended probability and shoreline.

Data flow (see docs/segment.md): ``raster_io`` (open, validate, band mapping, strip reads)
-> ``tiling`` (tile grid with overlap) -> ``inference`` (batched model forward) ->
``blending`` (weight windows, strip accumulator) -> ``pipeline`` (streams finished rows) ->
``writers`` (GeoTIFF, GeoPackage, Shapefile) and ``shoreline`` (sub-pixel marching squares).
``cli`` implements ``python -m backend segment``.
"""
