"""The Processing dialogs of both algorithms, opened as QGIS opens them (AlgorithmDialog at its
default size): no parameter label is cut off."""

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QCheckBox, QLabel, QScrollArea

pytestmark = [pytest.mark.qgis]


@pytest.mark.parametrize("alg_id", ["waterseg:segmentwatermany", "waterseg:segmentwater"])
def test_no_parameter_label_is_cut_off(
    plugin, qgis_processing, qgis_iface, monkeypatch, qtbot, alg_id
):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()  # the dialog asks iface for it; pytest-qgis has none
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    alg = QgsApplication.processingRegistry().algorithmById(alg_id)
    dialog = AlgorithmDialog(alg.create(), False, qgis_iface.mainWindow())
    try:
        dialog.show()
        qtbot.wait(200)
        panel = next(a for a in dialog.findChildren(QScrollArea) if a.widget().findChildren(QLabel))
        room = panel.viewport().width()
        labels = [
            w
            for kind in (QLabel, QCheckBox)  # a boolean's description is its check box's text
            for w in panel.widget().findChildren(kind)
            if w.isVisible() and w.text()
        ]
        assert len(labels) >= 5
        cut = [w.text() for w in labels if w.sizeHint().width() > room]
        assert not cut, f"wider than the {room} px panel: {cut}"
        assert panel.horizontalScrollBar().maximum() == 0
        for param in alg.parameterDefinitions():  # the long form is in each help (tooltip)
            if param.name() not in ("INPUT", "OUTPUT_MASK", "OUTPUT_SHORELINE", "OUTPUT_FOLDER"):
                assert param.help(), param.name()
    finally:
        dialog.close()
        dialog.deleteLater()
