"""Band namings that the CLI (`plan`, `segment`), the dock and Processing must map alike:
the issue's `red (B4)` case and the spellings users write. name -> (band descriptions of a
4-band raster, raster bands of B2 B3 B4 B8)."""

NAMED = {
    "colour-then-code": (["red (B4)", "green (B3)", "blue (B2)", "nir (B8)"], [3, 2, 1, 4]),
    "zero-padded": (["B04", "B03", "B02", "B08"], [3, 2, 1, 4]),
    "band-n-colour": (["Band 1 (blue)", "Band 2 (green)", "Band 4 (red)", "nir"], [1, 2, 3, 4]),
    "words": (["nir", "Red", "green", "blue"], [4, 3, 2, 1]),
}

# `segment --method` defaults to auto (an index where the raster has its bands): tests about
# the bundled-model choice and the model's band mapping ask for the model explicitly.
MODEL_METHOD = ["--method", "model"]
