"""The threads runner shares critpath's process (issue 10 §4): a service that leaves a non-daemon
thread, or changes the working folder, must not change how critpath ends or where it writes."""
from __future__ import annotations

import json

import psutil

from tests.helpers.processes import critpath


def _project(tmp_path, call: str, params: dict):
    (tmp_path / "graph.json").write_text(json.dumps({"services": [
        {"name": "odd", "call": call, "params": params},
        {"name": "after", "after": ["odd"], "duration": 0.01}]}))
    return tmp_path


def test_a_left_behind_thread_does_not_keep_critpath_alive(prefect_server, tmp_path):
    project = _project(tmp_path, "tests.helpers.worker_faults:leave_a_thread", {})
    proc = critpath("run", "--graph", "graph.json", "--runner", "threads", cwd=project, api_url=prefect_server,
                    timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "2/2 services completed" in proc.stdout
    assert "left 1 thread(s) running (left-behind)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(project)]


def test_a_service_that_changes_folder_does_not_move_the_report(prefect_server, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    _project(project, "tests.helpers.worker_faults:wander_off", {"where": str(elsewhere)})
    proc = critpath("run", "--graph", "graph.json", "--runner", "threads", cwd=project, api_url=prefect_server,
                    timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = project / ".critpath" / "last-run.json"
    assert json.loads(report.read_text())["services"]["odd"]["state"] == "completed"
    assert f"report: {report}" in proc.stdout
    assert not (elsewhere / ".critpath").exists()
