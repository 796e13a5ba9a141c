"""The background run of "Segment water": a thin QgsTask around the backend subprocess.

``run()`` (worker thread) waits its turn (one backend run at a time, so queued runs don't
fight over the GPU), starts ``python -m backend segment ... --progress json``, turns JSON
progress into ``setProgress``, and stops the process promptly when the task is cancelled.
``finished()`` (main thread) adds the styled layers or shows one readable error.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .backend_process import BackendRun, RunResult, backend_command
from .contract import describe_event, progress_percent
from .layers import add_results
from .request import SegmentRequest

LOG_TAG = "WaterSeg"
_one_at_a_time = threading.Lock()
EXPORT_PREFIX = "waterseg-export-"  # temporary folders of non-file layers' GeoTIFFs


def log(message: str, level=Qgis.Info) -> None:
    """Write to the "WaterSeg" tab of the QGIS log."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


class SegmentTask(QgsTask):
    """Runs one SegmentRequest. ``message`` carries a short status line for the dock."""

    message = pyqtSignal(str)
    # Emitted on the main thread after finished(): (task, result, mask layer, shoreline layer)
    completed = pyqtSignal(object, object, object, object)

    def __init__(self, request: SegmentRequest, iface=None, grace_s: float = 5.0):
        super().__init__(f"WaterSeg: segment water in {request.layer_name}", QgsTask.CanCancel)
        self.request = request
        self.iface = iface
        self.grace_s = grace_s
        self.result = RunResult()
        self.backend: BackendRun | None = None
        self.mask_layer = None
        self.shoreline_layer = None
        # callable(path) -> None: exports a non-file layer to ``path`` (a GeoTIFF in a
        # temporary folder that run() makes and removes) before the backend starts
        self.export_job = None

    def run(self) -> bool:
        # A cancelled run returns True: QGIS 3.22 reports every task whose run() returns False
        # as "Task failed" (a red "terminated" entry and system notification), so a cancel ends
        # as a completed task whose description says "cancelled" (see cancel()); finished()
        # then reads self.result.cancelled, not ``ok``.
        # Wait for the previous WaterSeg run (still cancellable while waiting).
        self.message.emit("waiting for the previous WaterSeg run")
        while not _one_at_a_time.acquire(timeout=0.2):
            if self.isCanceled():
                self.result.cancelled = True
                return True
        export_dir = None
        try:
            if self.export_job is not None and not self.isCanceled():
                self.message.emit("exporting the layer to a temporary GeoTIFF")
                # the task owns the temporary folder: made here, removed below whatever happens
                export_dir = tempfile.mkdtemp(prefix=EXPORT_PREFIX)
                self.request.input_path = str(Path(export_dir) / Path(self.request.input_path).name)
                try:
                    self.export_job(self.request.input_path)
                except Exception as exc:  # noqa: BLE001 - reported in finished()
                    self.result.error = str(exc)
                    return False
            if self.isCanceled():
                self.result.cancelled = True
                return True
            argv = backend_command(self.request.python, *self.request.backend_args())
            self.message.emit("starting the backend")
            self.backend = BackendRun(argv)
            self.result = self.backend.run(
                on_event=self._on_event, is_canceled=self.isCanceled, grace_s=self.grace_s
            )
            return self.result.ok or self.result.cancelled
        finally:
            if export_dir is not None:
                shutil.rmtree(export_dir, ignore_errors=True)
            _one_at_a_time.release()

    def _on_event(self, event: dict) -> None:
        percent = progress_percent(event)  # the contract's stages: one mapping for all
        if percent is not None:
            self.setProgress(percent)
        if event.get("event") in ("start", "progress"):
            self.message.emit(describe_event(event) or "")

    def cancel(self) -> None:
        log(f"cancelling the run on {self.request.layer_name}")
        if self.status() not in (QgsTask.Complete, QgsTask.Terminated):
            self.setDescription(f"{self.description()} (cancelled)")
        super().cancel()

    @property
    def was_cancelled(self) -> bool:
        """True when the run ended (or will end) because of a cancel."""
        return bool(self.result.cancelled or (self.isCanceled() and not self.result.ok))

    def finished(self, ok: bool) -> None:
        req = self.request
        res = self.result
        if ok and not self.was_cancelled:
            outputs = {**{k: str(v) for k, v in req.expected_outputs().items()}, **res.outputs}
            self.mask_layer, self.shoreline_layer = add_results(
                req.layer_name, outputs.get("mask"), outputs.get("shoreline_gpkg")
            )
            found = f"; {res.summary}" if res.summary else ""
            msg = (
                f"water mask and shoreline of {req.layer_name} added ({res.elapsed_s:.1f} s on "
                f"{res.device or req.device}{found})"
            )
            log(msg + f"; files in {req.out_dir}", Qgis.Success)
            self._push(msg, Qgis.Success, 5)
            self.completed.emit(self, res, self.mask_layer, self.shoreline_layer)
            return
        # the backend removes partial outputs itself; this also covers a killed backend
        for path in res.outputs.values():
            Path(path).unlink(missing_ok=True)
        if req.own_out_dir:  # this run's own sub-folder, left empty: remove it
            try:
                Path(req.out_dir).rmdir()
            except OSError:
                pass
        if self.was_cancelled:
            res.cancelled = True
            log(f"run on {req.layer_name} cancelled; no results were written")
            self._push(f"Cancelled: {req.layer_name} (no results were written)", Qgis.Info, 5)
        else:
            message = res.error or "the backend stopped unexpectedly"
            details = (
                f"Segment water failed for {req.layer_name}: {message}\n"
                f"exit code: {res.exit_code}\ncommand: "
                f"{' '.join(backend_command(req.python, *req.backend_args()))}\n"
                f"stderr (last lines):\n{res.log_tail}"
            )
            log(details, Qgis.Critical)
            self._push(f"{message} (details in the log, WaterSeg tab)", Qgis.Critical, 0)
        self.completed.emit(self, res, self.mask_layer, self.shoreline_layer)

    def _push(self, text: str, level, duration: int) -> None:
        if self.iface is not None:
            self.iface.messageBar().pushMessage("WaterSeg", text, level, duration)
