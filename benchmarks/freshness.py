"""7. Freshness: from an event to the last affected service done (issue 14).

One ``critpath serve`` with no schedule serves the bundled refresh from a scratch project
folder, against the bench's Prefect server, with a warehouse of its own built once in full
(plain calls, untimed). Each round, a newer day of orders lands (``ingest.land_orders``),
this process sends ``critpath.service.updated`` for ``ingest_orders`` (as ``critpath emit``
does) and the round ends when that refresh's report is written and its flow run has ended.
Every time is read from this machine's one clock::

    event sent --automation--> flow run created --debounce, runner poll, process start--> running
        --critpath set-up: graph, take-over, plan, engine--> first service starts
        --the services of ingest_orders+--> last service ends

- **freshness** = event sent -> the last affected service ends; the data is fresh then.
- **Prefect's part** = event sent -> the flow run is running (its ``start_time`` on the
  server): the automation (sent -> the run created) and the start (created -> running,
  which holds ``debounce``, up to one poll of serve's runner, and the run's process).
- **critpath's part** = running -> first service start (``set-up``), then the makespan of
  the affected services, against their own critical path: the longest chain of
  ``ingest_orders+`` by the durations measured on the workers (the report's
  ``measured_critical_path_s``; the run's plan is of the selection only).

There is no baseline: Prefect has no partial refresh to compare with. The bench starts
and stops what it uses by process id: serve runs in a process group of its own, stopped
with Ctrl-C's SIGINT (serve then pauses the deployment and removes what waits), SIGKILL
after a bound; the Prefect server is the bench's (``benchmarks.server``).
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLL_S = 1.0  # serve's PREFECT_RUNNER_POLL_FREQUENCY (Prefect's default is 10)
DEBOUNCE_S = 0.5
WAIT_S = 300  # bounds each wait; never a measurement
SOURCE = "ingest_orders"
PARTS = ("freshness_s", "prefect_s", "automation_s", "start_s", "setup_s", "makespan_s", "critical_path_s")


def breakdown(sent_at: float, created: float, running: float, report: dict) -> dict:
    """One round's times (seconds) from the event's send time, the flow run's creation and
    start on the server (Unix seconds) and the refresh's report. Pure: the unit tests' target."""
    ran = [s for s in report["services"].values() if s.get("start") is not None and s.get("end") is not None]
    if not ran:
        raise ValueError("the refresh's report has no service that ran")
    first, last = min(s["start"] for s in ran), max(s["end"] for s in ran)
    cp = report.get("measured_critical_path_s")
    return {"freshness_s": last - sent_at, "prefect_s": running - sent_at, "automation_s": created - sent_at,
            "start_s": running - created, "setup_s": first - running, "makespan_s": last - first,
            "critical_path_s": cp, "freshness_over_critical_path": (last - sent_at) / cp if cp else None,
            "makespan_over_critical_path": (last - first) / cp if cp else None,
            "services": len(report["services"]), "ran": len(ran), "failed": len(report.get("failed") or ())}


def summarize(points: list[dict]) -> dict:
    """The medians of the rounds' parts, and their ratios to the critical path (median of ratios)."""
    out = {}
    for key in (*PARTS, "freshness_over_critical_path", "makespan_over_critical_path"):
        values = [p[key] for p in points if p.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["worst_freshness_s"] = max((p["freshness_s"] for p in points), default=None)
    return out


class Freshness:
    """``critpath serve`` of the refinery on ``runner``, entered (started) and exited (stopped)."""

    def __init__(self, server, settings, runner: str = "threads"):
        self.server, self.s, self.runner = server, settings, runner
        self.points: list[dict] = []
        self.proc: subprocess.Popen | None = None
        self.failed = 0

    # -- lifetime -----------------------------------------------------------------------
    def __enter__(self) -> "Freshness":
        self._dir = tempfile.TemporaryDirectory(prefix="critpath-bench-freshness-")
        self.project = Path(self._dir.name)
        self.warehouse = self.project / "warehouse"
        self.runs = self.project / ".critpath" / "runs"
        self.name = f"bench-freshness-{os.getpid()}"
        self.log = open(self.project / "serve.log", "w+")
        try:
            from services import refinery

            for fn in refinery.SERVICES:  # last night's full refresh, untimed
                fn(warehouse=self.warehouse, scale=self.s.freshness_scale, fault="")
            root = Path(__file__).resolve().parent.parent
            path = [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
            env = {**os.environ, "CRITPATH_WAREHOUSE": str(self.warehouse), "CRITPATH_FAULT": "",
                   "CRITPATH_SCALE": str(self.s.freshness_scale), "PREFECT_RUNNER_POLL_FREQUENCY": f"{POLL_S:g}",
                   "PREFECT_API_URL": self.server.url, "PYTHONPATH": os.pathsep.join(path)}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "serve", "--module", "services.refinery", "--runner",
                 self.runner, "--name", self.name, "--debounce", f"{DEBOUNCE_S:g}"],
                cwd=self.project, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                start_new_session=True)
            self._wait(lambda: "serving deployment" in self._output() or self.proc.poll() is not None,
                       "critpath serve to serve")
            if self.proc.poll() is not None:
                raise RuntimeError(f"critpath serve exited {self.proc.returncode}: {self._output()[-400:]}")
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C: serve stands the deployment down
                try:
                    self.proc.wait(90)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(30)
        finally:
            self.log.close()
            self._dir.cleanup()

    def _output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    @staticmethod
    def _wait(predicate, what: str):
        """A bounded wait for what another process writes; the times measured never come from here."""
        deadline = time.monotonic() + WAIT_S
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still waiting after {WAIT_S} s for {what}")
            time.sleep(0.1)

    # -- the bench's verbs --------------------------------------------------------------
    def critpath_round(self) -> dict:
        from orchestrator.flows.triggers import emit
        from services.refinery import ingest

        self.server.settle()
        ingest.land_orders(warehouse=self.warehouse, scale=self.s.freshness_scale)
        seen = set(self.runs.glob("*.json")) if self.runs.is_dir() else set()
        sent_at = time.time()
        emit([SOURCE], source="critpath bench")
        path = self._wait(lambda: next(iter(set(self.runs.glob("*.json")) - seen), None) if self.runs.is_dir()
                          else None, f"the report of the refresh of {SOURCE}+")
        report = json.loads(path.read_text())
        run = self._wait(lambda: self._ended(report["flow_run_id"]), "the refresh's flow run to end")
        point = breakdown(sent_at, run.created.timestamp(), run.start_time.timestamp(), report)
        point["flow_run"] = run.name
        self.failed += point["failed"]
        self.points.append(point)
        return point

    @staticmethod
    def _ended(flow_run_id: str):
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        return run if run.state is not None and run.state.is_final() else None

    def baseline_round(self) -> None:
        """No baseline: Prefect alone has no refresh of a service and its downstream."""

    def row(self) -> dict:
        return {"measure": "freshness", "runner": self.runner, "source": SOURCE, "scale": self.s.freshness_scale,
                "debounce_s": DEBOUNCE_S, "poll_s": POLL_S, "rounds": len(self.points),
                "services": self.points[0]["services"] if self.points else None,
                **summarize(self.points), "points": self.points, "failed": self.failed}
