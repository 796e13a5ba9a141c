"""The dock in real QGIS (offscreen): the raster layer it picks by itself (issue 11, item 13),
warnings that go once they no longer apply (item 14), and a default width at which nothing is
clipped (item 12)."""

from pathlib import Path

import pytest
from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QRect, Qt
from qgis.PyQt.QtWidgets import QMainWindow, QWidget

from .conftest import write_raster

pytestmark = pytest.mark.qgis


def _raster(path: Path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    return layer


@pytest.fixture()
def dock_in_window(qgis_iface, qgis_new_project, clean_settings, qtbot):
    """A factory: a WaterSegDock docked on the right of a fresh 1280 x 800 main window with a
    central widget (as in QGIS), created when called, so that a test can load layers first."""
    from plugin.dock import WaterSegDock

    made = []

    def make():
        window = QMainWindow()
        window.setCentralWidget(QWidget())
        window.resize(1280, 800)
        dock = WaterSegDock(qgis_iface, window)
        window.addDockWidget(Qt.RightDockWidgetArea, dock)
        made.append((window, dock))
        return window, dock

    yield make
    for window, dock in made:
        dock.shutdown()
        qtbot.waitUntil(lambda dock=dock: not dock.active_tasks(), timeout=30000)
        window.close()
        window.deleteLater()
    QgsProject.instance().removeAllMapLayers()


# ---- item 13: the raster layer is chosen ----------------------------------------------------


def test_the_only_raster_is_chosen_when_the_dock_opens(dock_in_window, tmp_path, qtbot):
    raster = _raster(write_raster(tmp_path / "only.tif"), "only")
    lines = QgsVectorLayer("LineString?crs=EPSG:4326", "lines", "memory")
    QgsProject.instance().addMapLayers([lines, raster])
    _window, dock = dock_in_window()
    assert dock.layerCombo.currentLayer() is raster


def test_the_active_raster_is_chosen_among_several(
    dock_in_window, qgis_iface, tmp_path, monkeypatch
):
    a = _raster(write_raster(tmp_path / "a.tif"), "a")
    b = _raster(write_raster(tmp_path / "b.tif"), "b")
    QgsProject.instance().addMapLayers([a, b])
    monkeypatch.setattr(qgis_iface, "activeLayer", lambda: b)
    _window, dock = dock_in_window()
    assert dock.layerCombo.currentLayer() is b


def test_no_choice_among_several_rasters_without_an_active_one(
    dock_in_window, qgis_iface, tmp_path, monkeypatch
):
    a = _raster(write_raster(tmp_path / "a.tif"), "a")
    b = _raster(write_raster(tmp_path / "b.tif"), "b")
    QgsProject.instance().addMapLayers([a, b])
    monkeypatch.setattr(qgis_iface, "activeLayer", lambda: None)
    _window, dock = dock_in_window()
    assert dock.layerCombo.currentLayer() is None  # a guess between two would be wrong


def test_the_first_raster_added_to_an_empty_project_is_chosen(
    dock_in_window, qgis_iface, tmp_path, monkeypatch
):
    monkeypatch.setattr(qgis_iface, "activeLayer", lambda: None)
    _window, dock = dock_in_window()
    assert dock.layerCombo.currentLayer() is None
    QgsProject.instance().addMapLayer(QgsVectorLayer("Point?crs=EPSG:4326", "pts", "memory"))
    assert dock.layerCombo.currentLayer() is None
    first = _raster(write_raster(tmp_path / "first.tif"), "first")
    QgsProject.instance().addMapLayer(first)
    assert dock.layerCombo.currentLayer() is first
    second = _raster(write_raster(tmp_path / "second.tif"), "second")
    QgsProject.instance().addMapLayer(second)
    assert dock.layerCombo.currentLayer() is first  # a later raster never replaces the choice


# ---- item 14: the warning goes once a layer is chosen ----------------------------------------


def test_the_warning_goes_when_a_layer_is_chosen(dock_in_window, qgis_iface, tmp_path, monkeypatch):
    monkeypatch.setattr(qgis_iface, "activeLayer", lambda: None)
    _window, dock = dock_in_window()
    assert dock.start_run() is None
    assert "Choose a raster layer" in dock.last_message()
    a = _raster(write_raster(tmp_path / "a.tif"), "a")
    b = _raster(write_raster(tmp_path / "b.tif"), "b")
    QgsProject.instance().addMapLayers([a, b])  # two at once: the dock leaves the choice open
    assert dock.layerCombo.currentLayer() is None
    assert "Choose a raster layer" in dock.last_message()
    dock.layerCombo.setLayer(b)
    assert dock.last_message() == ""
    assert dock.message_bar.items() == []


# ---- item 12: nothing is clipped at the default width -----------------------------------------


def _inside(widget, viewport) -> bool:
    top_left = widget.mapTo(viewport, widget.rect().topLeft())
    return viewport.rect().contains(QRect(top_left, widget.size()))


def test_default_width_shows_everything_without_a_horizontal_scrollbar(
    dock_in_window, tmp_path, qtbot
):
    long_name = "S2B_MSIL2A_20240715T100559_N0510_R022_T32TQM_20240715T130124 (Bracciano)"
    QgsProject.instance().addMapLayer(_raster(write_raster(tmp_path / "s.tif"), long_name))
    window, dock = dock_in_window()
    window.show()
    dock.show()
    qtbot.waitExposed(window)
    qtbot.wait(50)
    area = dock.scrollArea
    viewport = area.viewport()
    # the width QMainWindow gives a new dock: its size hint, never less than its minimum
    assert dock.width() <= max(dock.sizeHint().width(), dock.minimumSizeHint().width()) + 2
    assert dock.layerCombo.currentText().startswith("S2B_MSIL2A")  # the long name is there
    assert not area.horizontalScrollBar().isVisible()
    assert area.horizontalScrollBar().maximum() == 0
    for widget in (
        dock.runButton,
        dock.cancelButton,
        dock.exportButton,
        dock.shorelineCombo,
        dock.layerCombo,
        dock.modelCombo,
        dock.browseModelButton,
        dock.outDirWidget,
    ):
        assert _inside(widget, viewport), (widget.objectName(), widget.geometry(), viewport.size())
    for combo in dock.option_widgets.values():
        if combo.isVisible():
            assert _inside(combo, viewport), combo.objectName()


def test_a_long_message_or_file_name_adds_no_horizontal_scrollbar(dock_in_window, qtbot):
    window, dock = dock_in_window()
    window.show()
    dock.show()
    qtbot.waitExposed(window)
    width = dock.width()
    stem = "S2B_MSIL2A_20240715T100559_N0510_R022_T32TQM_20240715T130124"
    dock.show_message(f"Layer '{stem}': has 1 band(s) but the model needs 4")  # + status line
    dock.modelInfoLabel.setText(f"/data/checkpoints/{stem}-unet-final-best.pt")
    dock.backendGroup.setCollapsed(False)
    qtbot.wait(50)
    assert dock.width() == width
    assert dock.scrollArea.horizontalScrollBar().maximum() == 0


def test_buttons_stay_put_when_a_message_comes_and_goes(dock_in_window, qtbot):
    """Item 14: a message coming or going moves no button: the message bar sits below them in
    a slot of fixed height, and the scrollbar's room is kept."""
    window, dock = dock_in_window()
    window.show()
    dock.show()
    qtbot.waitExposed(window)
    buttons = (dock.runButton, dock.cancelButton, dock.exportButton)

    def places():
        qtbot.wait(50)
        return [b.mapTo(dock, b.rect().topLeft()) for b in buttons]

    quiet = places()
    dock.show_message("Choose a raster layer")
    assert dock.message_bar.items() and dock.message_bar.isVisible()
    shown = places()
    assert shown == quiet
    assert dock.message_bar.mapTo(dock, dock.message_bar.rect().topLeft()).y() > shown[2].y()
    dock.clear_messages()  # the bar closes: nothing the cursor may be on moves
    assert not dock.message_bar.items()

    assert places() == shown


@pytest.mark.parametrize("method", ["auto", "model", "mixed-adaptive"])
def test_rows_of_each_method_fit_the_default_width(dock_in_window, tmp_path, qtbot, method):
    """Issue 22, item 5: once the plan has answered, the rows the method shows (the Method
    line, the model row for a model, the band mapping) add no horizontal scrollbar."""
    names = ["B2", "B3", "B4", "B8", "B11", "B12"]
    path = write_raster(tmp_path / "six.tif", bands=6, size=(16, 16), descriptions=names)
    QgsProject.instance().addMapLayer(_raster(path, "six"))
    window, dock = dock_in_window()
    window.show()
    dock.show()
    qtbot.waitExposed(window)
    window.resizeDocks([dock], [1], Qt.Horizontal)  # as narrow as the dock lets itself be
    combo = dock.option_widgets["method"]
    combo.setCurrentIndex(combo.findData(method))
    qtbot.wait(50)
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)
    qtbot.wait(50)
    assert dock.band_combos, dock.modelInfoLabel.text()
    area = dock.scrollArea
    assert area.horizontalScrollBar().maximum() == 0, method
    assert dock.modelCombo.isVisible() == (method == "model")
    viewport = area.viewport()
    for widget in (dock.runButton, dock.cancelButton, combo, *dock.band_combos):
        left = widget.mapTo(viewport, widget.rect().topLeft()).x()  # the dock scrolls down,
        assert 0 <= left and left + widget.width() <= viewport.width(), widget.objectName()


def test_render_rows_of_an_xyz_layer_fit_the_default_width(dock_in_window, tmp_path, qtbot):
    """Issue 22, item 3: the Resolution row, its Auto button and the line with the render's
    size and a long warning add no horizontal scrollbar."""
    from qgis.PyQt.QtGui import QColor, QImage

    tile = QImage(256, 256, QImage.Format_RGB32)
    tile.fill(QColor("#336699"))
    (tmp_path / "0" / "0").mkdir(parents=True)
    assert tile.save(str(tmp_path / "0" / "0" / "0.png"))
    url = f"file://{tmp_path.as_posix()}/{{z}}/{{x}}/{{y}}.png"
    layer = QgsRasterLayer(f"type=xyz&url={url}&zmin=0&zmax=0", "tiles", "wms")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    window, dock = dock_in_window()
    window.show()
    dock.show()
    qtbot.waitExposed(window)
    window.resizeDocks([dock], [1], Qt.Horizontal)
    dock.layerCombo.setLayer(layer)
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)
    dock.resolutionSpin.setValue(0.001)  # absurd: the longest line, a refusal
    qtbot.wait(50)
    assert dock.renderInfoLabel.text().startswith("Cannot render: ")
    assert not dock.resolutionAutoButton.isHidden() and not dock.resolutionRow.isHidden()
    area = dock.scrollArea
    assert area.horizontalScrollBar().maximum() == 0
    viewport = area.viewport()
    for widget in (dock.resolutionSpin, dock.resolutionAutoButton, dock.inputModeCombo):
        left = widget.mapTo(viewport, widget.rect().topLeft()).x()
        assert 0 <= left and left + widget.width() <= viewport.width(), widget.objectName()
