"""serve's last sweep of the processes its runner started: those that honour SIGTERM end on it,
those that do not are killed after the grace period, descendants included. Run in a process of
its own, since ``end_children`` acts on its caller's children."""
from __future__ import annotations

import json
import subprocess
import sys

import psutil

SCRIPT = r"""
import json, subprocess, sys, time
from orchestrator.flows.serving import end_children

polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
# ignores SIGTERM, and has a child of its own that outlives it unless killed too
stubborn = subprocess.Popen([sys.executable, "-c",
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "time.sleep(60)']); print(c.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
grandchild = int(stubborn.stdout.readline())
time.sleep(0.3)  # both have set their handlers
count = end_children(1.0)
polite.wait(10)
stubborn.wait(10)
print(json.dumps({"count": count, "polite": polite.returncode, "stubborn": stubborn.returncode,
                  "grandchild": grandchild, "again": end_children(1.0)}))
"""


def test_end_children_terminates_then_kills_what_ignores_it_and_its_descendants():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["count"] == 2 and result["again"] == 0
    assert result["polite"] == -15 and result["stubborn"] == -9
    try:
        gone = psutil.Process(result["grandchild"]).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        gone = True
    assert gone
