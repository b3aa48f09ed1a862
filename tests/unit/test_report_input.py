"""``critpath report`` on a hand-edited report: every bad key is one clear line, never a traceback
(issue 10 §7). In-process through ``read_report``, and once through the real command."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from orchestrator.execution.report import read_report
from orchestrator.planning.errors import CritpathError
from tests.helpers.graphs import DATA

SAMPLE = json.loads((DATA / "report-sample.json").read_text())
FIRST = next(iter(SAMPLE["services"]))


def _edited(**changes) -> dict:
    data = copy.deepcopy(SAMPLE)
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            data[outer][inner] = value
        else:
            data[key] = value
    return data


@pytest.mark.parametrize("changes, needle", [
    ({"critical_path": 5}, "critical_path must be a list of service names, got 5"),
    ({"failed": ["zzz"]}, "failed names ['zzz'], not among the report's services"),
    ({"makespan_s": "fast"}, "makespan_s must be a number of seconds, got 'fast'"),
    ({"services": [1, 2]}, "services must be an object of service name -> its record, got [1, 2]"),
    ({f"services.{FIRST}": None}, f"services.{FIRST} must be an object"),
    ({"efficiency": True}, "efficiency must be a number or null, got True"),
])
def test_a_hand_edited_report_is_one_line_naming_the_key(tmp_path, changes, needle):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_edited(**changes)))
    with pytest.raises(CritpathError) as err:
        read_report(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_sample_report_reads(tmp_path):
    assert read_report(DATA / "report-sample.json")["services"]


def test_the_command_prints_one_line_and_exits_2(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_edited(makespan_s="fast")))
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "report", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("critpath: error: report") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
