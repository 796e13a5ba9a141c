"""resources/contract.json agrees with the code on both sides of the process boundary: the
methods table with the --method choices and the engine's water indices."""

from backend.core.contract import methods, option
from backend.core.water_indices import ADAPTIVE_INDICES, method_bands


def test_methods_table_lists_the_method_choices_in_order():
    assert [m["name"] for m in methods()] == option("method")["choices"]


def test_methods_table_bands_and_water_rule_match_the_engine():
    for m in methods():
        if m["name"] in ("auto", "model"):
            assert m["bands"] is None
            continue
        assert tuple(m["bands"]) == method_bands(m["name"]), m["name"]
        assert (m["water"] == "scene") == (m["name"] in ADAPTIVE_INDICES), m["name"]
        assert m["water"] in ("zero", "scene")


def test_plugin_reads_the_same_methods():
    from plugin.contract import METHODS  # plain json: importable without QGIS

    assert list(METHODS) == [m["name"] for m in methods()]
    assert METHODS["mixed-adaptive"].describe() == (
        "mixed-adaptive (NDWI+MNDWI, threshold per scene)"
    )
    assert METHODS["mixed-adaptive"].bands == ("B3", "B8", "B11")
    assert METHODS["model"].water == "probability" and METHODS["auto"].water == ""


def test_the_model_pixel_range_is_the_contracts_on_both_sides():
    """segment's warning about pixels far from the training size and the dock's, before it
    renders a map layer, use the same numbers: the bundled models' resolution_m and the
    contract's tolerance."""
    from backend.core.contract import bundled_models, contract
    from backend.segment.cli import MODEL_PIXEL_RANGE_M, TRAINED_PIXEL_M
    from plugin.contract import BUNDLED_MODELS, MODEL_PIXEL_TOLERANCE

    tolerance = contract()["model_pixel_tolerance"]
    assert MODEL_PIXEL_TOLERANCE == tolerance
    for m in contract()["bundled_models"]:
        assert m["resolution_m"] == TRAINED_PIXEL_M == BUNDLED_MODELS[m["key"]].resolution_m
    assert MODEL_PIXEL_RANGE_M == (TRAINED_PIXEL_M / tolerance, TRAINED_PIXEL_M * tolerance)
    assert len(bundled_models()) == len(BUNDLED_MODELS)
