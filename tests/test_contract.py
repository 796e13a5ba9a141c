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
