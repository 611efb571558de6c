"""Running the comparison, one channel's values, the Keras device."""
from __future__ import annotations

import logging

from PySide6.QtCore import QTimer

from ...core import document as docmod
from ...core.errors import MigratorError
from ..workers import run_job

log = logging.getLogger("migrator.gui")


class CompareFlow:
    def __init__(self, win):
        self.win = win
        self.run_after_plan = False
        self._channel_job_seq = 0
        # how the last run ended when it left no result of its own ("comparison cancelled…")
        self.last_outcome: str | None = None
        self.input_changed_while_running = False
        # (runtime, settings) of the run under way, and of the run whose result is installed
        self._run_runtime: tuple[str, dict] | None = None
        self.last_runtime: tuple[str, dict] | None = None

    def run_comparison(self) -> None:
        w = self.win
        doc = w.doc
        if not doc.is_open:
            return
        if "compare" in w.jobs and w.jobs["compare"].running:
            return
        if doc.planning:
            self.run_after_plan = True
            return
        try:
            spec = w.compare.input_spec()
            runtime, rt_settings = w.compare.runtime_choice()
        except MigratorError as e:
            w.show_error("Cannot run the comparison", str(e))
            return
        plan = doc.plan
        fp = docmod.overrides_fingerprint(plan.overrides)
        model = doc.model if (doc.model is not None and doc.model_fp == fp) else None
        w.compare.set_running(True)
        self._run_runtime = (runtime, dict(rt_settings or {}))
        self.input_changed_while_running = False
        w.comparison_running(True)
        w.compare.save_settings(w.settings)
        log.info("comparison started (reference: %s)", runtime)
        w.jobs["compare"] = run_job(docmod.compare_model, doc.graph, plan, model, spec,
                                    runtime=runtime, runtime_settings=rt_settings,
                                    on_done=self.compared, on_error=self.failed,
                                    on_cancel=self.cancelled,
                                    on_progress=w.comparison_progress, name="compare", parent=w)
        w._update_actions()

    def after_plan(self) -> None:
        """Re-planning finished: run a comparison requested while it was under way."""
        if self.run_after_plan and not self.win.doc.planning:
            self.run_after_plan = False
            self.run_comparison()

    def cancel(self) -> None:
        job = self.win.jobs.get("compare")
        if job is not None and job.running:
            job.cancel()
            self.win.compare.progress.setFormat("cancelling…")
            self.win.status_result.setText("cancelling…")

    def compared(self, res: dict) -> None:
        w = self.win
        w.compare.set_running(False)
        r = res["result"]
        w.compare.set_finished("cancelled" if getattr(r, "cancelled", False) else "done")
        self.last_outcome = None
        w.results_outdated = None
        w.results_model.outdated = False
        w.comparison_running(False)
        self.last_runtime = self._run_runtime
        w.doc.set_result(res["result"], res["fingerprint"], model=res["model"],
                         model_fp=res["fingerprint"], x=res["x"], input_desc=res["input_desc"])
        fd = r.first_divergent
        if getattr(r, "cancelled", False):
            log.info("comparison cancelled: %s", getattr(r, "coverage_note", None) or "partial results")
        else:
            log.info("comparison finished: %s%s", "PASS" if r.passed else "FAIL",
                     f" (first divergent layer '{fd.source}')" if fd else "")
        if self.input_changed_while_running:
            w.mark_results_outdated("input changed during the run — results below are from "
                                    "the earlier input")
        w._update_actions()
        # the window installs the result in several short steps: select the first divergent
        # layer (one more step) once they are done
        w.when_result_installed(
            lambda: QTimer.singleShot(1, lambda: self._after_compare(fd.source if fd is not None else None)))

    def _after_compare(self, first_divergent: str | None) -> None:
        w = self.win
        if first_divergent is not None and w.doc.first_divergent is not None:
            w.select_source(first_divergent)
        w.comparison_done.emit()

    def failed(self, msg: str, details: str) -> None:
        w = self.win
        w.compare.set_running(False)
        w.compare.set_finished("failed")
        self._ended_without_result("comparison failed")
        w.show_error("Comparison failed", msg, details)
        w._update_actions()
        w.comparison_done.emit()

    def cancelled(self) -> None:
        w = self.win
        w.compare.set_running(False)
        w.compare.set_finished("cancelled")
        self._ended_without_result("comparison cancelled")
        log.info("comparison cancelled")
        w._update_actions()
        w.comparison_done.emit()

    def _ended_without_result(self, what: str) -> None:
        """A run ended with no result of its own: results of an earlier run are marked as
        such, and the status bar says what happened."""
        w = self.win
        w.comparison_running(False)
        if w.doc.result is not None:
            self.last_outcome = None
            w.mark_results_outdated(f"{what} — results below are from the previous run")
            w.statusBar().showMessage(f"{what}: the results shown are from the previous run", 10000)
        else:
            self.last_outcome = f"{what} — no results"
            w.mark_results_outdated(None)
            w.statusBar().showMessage(f"{what}: no results", 10000)

    # ---- one channel ------------------------------------------------------------------------------
    def show_channel(self, channel: int) -> None:
        w = self.win
        name = self.channel_plot_layer()
        if name is None:
            return
        self._channel_job_seq += 1
        seq = self._channel_job_seq
        w.channel_view.clear(f"Computing {name}, channel {channel}…")
        w.plot_tabs.setCurrentWidget(w.channel_view)

        def done(cv):
            if seq == self._channel_job_seq:
                w.channel_view.show_values(cv.source, cv.channel, cv.reference, cv.keras)
                w.channel_values_ready.emit()

        def failed(msg, details):
            if seq == self._channel_job_seq:
                w.channel_view.clear(f"Cannot show the channel: {msg}")

        w.jobs["channel"] = run_job(w.doc.channel_values, name, channel, on_done=done,
                                    on_error=failed, name="channel", parent=w)

    def channel_plot_layer(self) -> str | None:
        return self.win.channel_plot.layer_name

    # ---- device ------------------------------------------------------------------------------------
    def detect_device(self) -> None:
        w = self.win

        def work(progress=None, cancel=None):
            from ...core.keras_build.executor import keras_device_description
            return keras_device_description()

        def done(desc):
            w.compare.device.setText(f"Keras device: {desc}")
            w.set_status_device(desc)

        w.jobs["device"] = run_job(work, on_done=done,
                                   on_error=lambda m, d: w.compare.device.setText(f"Keras device: unknown ({m})"),
                                   name="device", parent=w)
