"""6. Prediction: does the plan predict the run? (issue 11)

For each graph and runner: a fresh duration history (in a temporary folder, never the
project's), ``warmups`` refreshes at one concurrency to fill it, then one refresh at each
measured concurrency. Before each of those, the planner predicts its makespan from that
history on the machine model (``planning.machine``); the row sets predicted against
measured, beside the zero-overhead slot simulation (``simulated_makespan_s``), which is
what the plan said before it had a model of the machine.

Graphs: the bundled refresh, and two graphs of ``kind: work`` services (a fixed amount of
CPU work each, which contention stretches, unlike ``kind: cpu``, which spins for a wall
time): a fan-out of equal services, and a chain beside a crowd of short ones (the long
pole that small islands stretch). Target: |measured / predicted - 1| <= 10% (goal 5%).
"""
from __future__ import annotations

import statistics
import tempfile

from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service

TARGET, GOAL = 0.10, 0.05


def work_fanout(n: int = 8, seconds: float = 0.5) -> Graph:
    return Graph([Service(f"w{i:02d}", duration=seconds, kind="work") for i in range(n)], source="work fan-out")


def work_pole_and_islands(chain: int = 4, seconds: float = 0.5, shorts: int = 8, short_s: float = 0.2) -> Graph:
    pole = [Service(f"pole{i}", after=(f"pole{i - 1}",) if i else (), duration=seconds, kind="work")
            for i in range(chain)]
    islands = [Service(f"island{i:02d}", duration=short_s, kind="work") for i in range(shorts)]
    return Graph(pole + islands, source="work pole + islands")


class Prediction:
    """One graph on one runner: warm-ups, then predicted against measured at each concurrency."""

    def __init__(self, engine, settings, graph: Graph, label: str):
        self.e, self.s, self.graph, self.label = engine, settings, graph, label
        self.rows: list[dict] = []
        self._dir = tempfile.TemporaryDirectory(prefix="critpath-bench-history-")

    def critpath_round(self) -> None:
        from orchestrator.flows.flow import run
        from orchestrator.inputs.history import History

        with History(self._dir.name) as history:
            warm_at = max(self.s.prediction_concurrencies)
            for _ in range(self.s.prediction_warmups):
                self.e.server.settle()
                run(self.graph, self.e.runner, max_concurrency=warm_at, history=history)
            for c in self.s.prediction_concurrencies:
                self.e.server.settle()
                if hasattr(self.e.runner, "warm"):
                    self.e.runner.warm()
                rep = run(self.graph, self.e.runner, max_concurrency=c, history=history)
                predicted, measured = rep.get("predicted_makespan_s"), rep["makespan_s"]
                simulated = rep["simulated_makespan_s"]
                error = measured / predicted - 1 if predicted else None
                self.rows.append({
                    "measure": "prediction", "runner": self.e.name, "graph": self.label, "concurrency": c,
                    "services": len(self.graph), "cores": rep.get("cores"), "warmups": self.s.prediction_warmups,
                    "predicted_s": predicted, "simulated_s": simulated, "measured_s": measured,
                    "prediction_error": error, "simulation_error": measured / simulated - 1 if simulated else None,
                    "target_met": abs(error) <= TARGET if error is not None else None,
                    "goal_met": abs(error) <= GOAL if error is not None else None,
                    "failed": len(rep["failed"])})

    def baseline_round(self) -> None:
        """The baseline is in the row: the slot simulation's figure for the same run."""

    def row(self) -> dict:
        self._dir.cleanup()
        errors = [abs(r["prediction_error"]) for r in self.rows if r["prediction_error"] is not None]
        return {"measure": "prediction", "runner": self.e.name, "graph": self.label, "points": self.rows,
                "median_abs_error": statistics.median(errors) if errors else None,
                "worst_abs_error": max(errors) if errors else None,
                "target_met": all(r["target_met"] for r in self.rows) if self.rows else None,
                "failed": sum(r["failed"] for r in self.rows)}


def graphs(settings) -> list[tuple[str, Graph]]:
    from .measures import refinery_graph

    out = [("work fan-out", work_fanout()), ("work pole + islands", work_pole_and_islands())]
    refinery, _ = refinery_graph()
    if refinery is not None and settings.prediction_refresh:
        out.insert(0, ("bundled refresh", refinery))
    return out
