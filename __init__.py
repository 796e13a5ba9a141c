"""WaterSeg QGIS plugin entry point: QGIS calls classFactory(iface) when it loads the plugin."""


def classFactory(iface):  # noqa: N802 (name fixed by QGIS)
    from .plugin.main import WaterSegPlugin

    return WaterSegPlugin(iface)
