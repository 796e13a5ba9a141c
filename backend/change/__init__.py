"""Shoreline change through time: dated scenes -> transects, positions, DSAS statistics.

Modules, in the order a run uses them: dates, scenes (batch rows, quality flags), crs,
baseline (median shoreline from the masks), transects, positions, levels, outliers, rates,
pipeline (the steps in order), outputs, plots, html, cli. Never imports qgis.
"""
