"""Plugin errors name the cause and the fix in one line (issue 22 item 4): a layer export that
fails, Processing bands the layer does not have, Processing outputs that cannot be written.
Rasters and vectors are made here with a real CRS."""

from pathlib import Path

import pytest
from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProject, QgsRasterLayer

from .conftest import EPSG, write_raster

pytestmark = pytest.mark.qgis

NOWHERE = Path("/proc/waterseg-test")  # no process may create files here, root neither


def test_a_failed_layer_export_says_why_and_what_to_do(qgis_app, tmp_path):
    from plugin.layers import export_extent, export_raster_extent

    layer = QgsRasterLayer(str(write_raster(tmp_path / "src.tif", size=(20, 30))), "src")
    extent, cols, rows = export_extent(layer, None, layer.crs())
    out = tmp_path / "gone" / "export.tif"  # its folder does not exist
    with pytest.raises(RuntimeError) as info:
        export_raster_extent(
            layer.dataProvider().clone(), layer.crs(), str(out), extent, cols, rows
        )
    message = str(info.value)
    assert message.startswith(f"exporting the layer to {out} failed (cannot create the file: ")
    assert "No such file or directory" in message  # GDAL's own reason
    assert message.endswith(
        f"check the free space and permissions of {out.parent}, or save the layer as GeoTIFF "
        "(Export > Save As) and segment that file"
    )


def test_processing_bands_the_layer_lacks_say_how_to_number_them(plugin, tmp_path, qgis_processing):
    import processing

    layer = QgsRasterLayer(str(write_raster(tmp_path / "four.tif", size=(16, 16))), "four")
    QgsProject.instance().addMapLayer(layer)
    with pytest.raises(QgsProcessingException) as info:
        processing.run(
            "waterseg:segmentwater",
            {
                "INPUT": layer,
                "BANDS": "2,9",
                "OUTPUT_MASK": str(tmp_path / "mask.tif"),
                "OUTPUT_SHORELINE": str(tmp_path / "coast.gpkg"),
            },
        )
    assert str(info.value) == (
        "Layer 'four' has 4 bands, so Bands 2,9 cannot all exist: number them from 1 to 4, in "
        "the order the method reads them."
    )


def test_processing_outputs_that_cannot_be_written_say_so(qgis_app, tmp_path):
    from osgeo import ogr, osr

    from plugin.algorithm import _convert_vector, _move_raster

    mask = write_raster(tmp_path / "mask.tif", bands=1, size=(8, 8))
    for dest in (NOWHERE / "mask.tif", Path("/proc") / "mask.img"):  # moved; converted by GDAL
        with pytest.raises(QgsProcessingException) as info:
            _move_raster(str(mask), str(dest))
        message = str(info.value)
        assert message.startswith(f"cannot write the water mask to {dest} (")
        assert message.endswith("): choose another file, e.g. a GeoTIFF (.tif)")
        assert "()" not in message  # the reason is there

    shore = tmp_path / "shore.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(shore))
    ref = osr.SpatialReference()
    ref.ImportFromEPSG(EPSG)
    lines = ds.CreateLayer("shoreline", ref, ogr.wkbLineString)
    feat = ogr.Feature(lines.GetLayerDefn())
    feat.SetGeometry(ogr.CreateGeometryFromWkt("LINESTRING (500000 4600000, 500100 4599900)"))
    lines.CreateFeature(feat)
    ds = None  # noqa: F841 (closes the file)
    with pytest.raises(QgsProcessingException) as info:
        _convert_vector(str(shore), str(NOWHERE / "coast.gpkg"), QgsProcessingContext())
    message = str(info.value)
    assert message.startswith(f"cannot write the shoreline to {NOWHERE / 'coast.gpkg'} (")
    assert message.endswith("): choose another file, e.g. a GeoPackage (.gpkg)")
