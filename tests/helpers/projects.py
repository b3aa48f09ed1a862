"""A project folder for a ``critpath`` subprocess: its graph file and what the run left in it."""
from __future__ import annotations

import json
from pathlib import Path


def graph_file(project: Path, services: list[dict], pools: dict | None = None) -> Path:
    """Writes ``project/g.json`` (creating ``project``) and returns its path."""
    project.mkdir(parents=True, exist_ok=True)
    path = project / "g.json"
    path.write_text(json.dumps({"services": services, **({"pools": pools} if pools else {})}))
    return path


def last_report(project: Path) -> dict:
    """The JSON report of the project's last run (``.critpath/last-run.json``)."""
    return json.loads((project / ".critpath" / "last-run.json").read_text())
