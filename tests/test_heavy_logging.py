"""A service that logs 50,000 lines (issue 10 §9): Prefect gets a bounded number of them per attempt,
with one line saying how many were left out and where every line is; the file has them all."""
from __future__ import annotations

import asyncio
import json

from tests.helpers.processes import critpath

LINES = 50_000


async def _log_messages(url: str, flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async with PrefectClient(url) as client:
        out, offset = [], 0
        while True:
            batch = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                           limit=200, offset=offset)
            out += [log.message for log in batch]
            if len(batch) < 200:
                return out
            offset += 200


def test_a_chatty_service_is_bounded_in_prefect_and_kept_whole_on_disk(prefect_server, tmp_path):
    (tmp_path / "graph.json").write_text(json.dumps({"services": [
        {"name": "chatty", "call": "tests.helpers.worker_faults:chatter", "params": {"lines": LINES}},
        {"name": "after", "after": ["chatty"], "duration": 0.01}]}))
    proc = critpath("run", "--graph", "graph.json", cwd=tmp_path, api_url=prefect_server, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / ".critpath" / "last-run.json").read_text())
    messages = asyncio.run(_log_messages(prefect_server, report["flow_run_id"]))
    lines = [m for m in messages if m.startswith("line ")]
    assert 0 < len(lines) <= 1000
    assert lines[0] == f"line 1 of {LINES}" and lines[-1] == f"line {LINES} of {LINES}"
    (note,) = [m for m in messages if "log lines of this attempt are not in Prefect" in m]
    assert note.startswith(f"critpath: {LINES - 1000} log lines")
    kept = note.rsplit("every line is in ", 1)[1]
    assert kept.startswith(str(tmp_path / ".critpath" / "runs"))
    with open(kept) as f:
        assert sum(1 for _ in f) == LINES
