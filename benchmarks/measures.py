"""The five measures, each a case object with the same three verbs.

    case.baseline_round()   time the baselines once (Prefect-native, raw engine)
    case.critpath_round()   time critpath once (one ``run()``, one Prefect flow run)
    case.row()              the medians and ratios, as one JSON-ready dict

``critpath bench`` calls them in a loop, critpath then the baselines, round
after round, so both are measured in the same process, on the same engine, in
the same machine state; ``pytest benchmarks/`` hands the same two verbs to
pytest-benchmark as ``target`` and ``teardown`` (so its timings are critpath's
``run()`` calls) and stores ``row()`` in ``extra_info``.

Before every timed run the harness waits until the Prefect server has digested
the previous run's events and the engines are idle again (``Server.settle``), so
no run shares the cores with the previous one's aftermath (a Prefect-native run
on Ray leaves dozens of Ray workers starting up).

Units: per-hop overhead in milliseconds per service of a 50-service no-op chain
(makespan / 50); throughput in services per second (services / makespan).
critpath's makespan is first dispatch to last completion; its
``prefect_recorded_s`` is first dispatch until the Prefect server had stored
every final state, shown beside it. Prefect-native and raw makespans are first
submit to the moment every future is done.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from orchestrator.planning.graph import Graph
from orchestrator.planning.planner import Plan, make_plan

from .baselines import NATIVE_NAME, RAW_NAME, baselines_for, native_graph
from .graphs import noop_chain, noop_fanout


@dataclass
class Settings:
    """What a bench run measures, and how much of it (``quick()`` is the CI subset)."""

    quick: bool = False
    runners: tuple[str, ...] = ("threads", "processes", "dask", "ray")
    measures: tuple[str, ...] = ("overhead", "throughput", "efficiency", "planner", "refresh", "prediction",
                                 "freshness")
    slots: int = 8  # every runner's default capacity (orchestrator.flows.flow.DEFAULT_CONCURRENCY)
    high_concurrency: int | None = 64
    hops: int = 50
    overhead_repeats: int = 5
    fanout: int = 2000
    #: Prefect-native fan-out size: 13-15 services/s on Dask and Ray (BASELINES.md) makes 2,000 take minutes
    native_fanout: dict = field(default_factory=lambda: {"threads": 2000, "dask": 300, "ray": 300})
    #: (measure, runner) pairs whose Prefect-native baseline is not run (the tables say why)
    native_skip: tuple[tuple[str, str], ...] = ()
    #: RayTaskRunner resolves ``wait_for`` inside a running task: every waiting task blocks a
    #: Ray worker and Ray starts another (seconds each here), so on deep graphs one Prefect-native
    #: run takes minutes; in the efficiency measure it runs on these families only
    ray_native_families: tuple[str, ...] = ("chain + shorts", "alternating chains")
    throughput_repeats: int = 2  # at the default concurrency; one round at the high one
    concurrencies: tuple[int, ...] = (2, 4, 8)
    #: (case, concurrency) pairs; None: every family and every trace at every concurrency
    cases: tuple[tuple[str, int], ...] | None = None
    target_s: float = 3.0
    #: critpath's refreshes per efficiency case, the median counting: on a shared 2-core VM one
    #: refresh moves 5-10% and a single hiccup of the machine (0.5 s) would decide a case alone;
    #: the baselines run in the first round only (Prefect-native on Ray takes minutes per deep graph)
    efficiency_rounds: int = 3
    solver_time_limit_s: float = 10.0
    #: baselines on the families at these concurrencies (Prefect-native on Ray takes minutes per case)
    baseline_concurrencies: tuple[int, ...] = (2,)
    planner_sizes: tuple[int, ...] = (10_000, 100_000)
    planner_memory: bool = True  # a second, traced (slower) process per size for tracemalloc's peak
    refresh_baselines: bool = True
    refresh_scale: float | None = None  # $CRITPATH_SCALE for the refinery; None: its default
    #: the prediction measure (benchmarks/prediction.py): runners, warm-up runs, concurrencies
    prediction_runners: tuple[str, ...] = ("threads", "processes", "dask")
    prediction_warmups: int = 2
    prediction_concurrencies: tuple[int, ...] = (1, 2, 4, 8)
    prediction_refresh: bool = True
    #: the freshness measure (benchmarks/freshness.py): served runners, rounds, the refinery's scale
    freshness_runners: tuple[str, ...] = ("threads",)
    freshness_rounds: int = 5
    freshness_scale: float = 1.0

    @classmethod
    def quick_set(cls, **overrides) -> "Settings":
        # not freshness: serving the refresh and two rounds add 35 s or more (--only freshness runs it)
        s = cls(quick=True, measures=("overhead", "throughput", "efficiency", "planner", "refresh", "prediction"),
                high_concurrency=None, overhead_repeats=2, fanout=500,
                native_fanout={"threads": 500, "dask": 30, "ray": 30}, throughput_repeats=1,
                # Prefect-native per hop on Dask and Ray costs 70 ms to seconds: the full run measures it
                native_skip=(("overhead", "ray"), ("overhead", "dask")),
                cases=(("chain + shorts", 2), ("pool-constrained", 4), ("montage-chameleon-2mass-005d-001", 8)),
                # no baselines on the efficiency families: at 2 slots they need engines of their
                # own (a second Dask cluster), a third of the quick set's time; the full run has them
                solver_time_limit_s=2.0, efficiency_rounds=1, baseline_concurrencies=(), refresh_scale=0.1,
                refresh_baselines=False, planner_memory=False, prediction_runners=("processes",),
                # one runner, one warm-up, two limits: the CI check that the model still predicts,
                # in a third of the time (the full run covers threads, processes and Dask at 1-8)
                prediction_warmups=1, prediction_concurrencies=(1, 4), prediction_refresh=False, freshness_rounds=2,
                freshness_scale=0.01)
        for k, v in overrides.items():
            setattr(s, k, v)
        return s


def guarded(baseline_round):
    """A baseline that breaks (Prefect-native on a struggling engine, say) becomes an
    error noted in the row, shown as n/a; it never stops critpath's measurement."""

    def wrapper(self) -> None:
        try:
            baseline_round(self)
        except Exception as exc:  # reported in the row and the tables
            self.baseline_errors = [*getattr(self, "baseline_errors", []),
                                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"]

    wrapper.__doc__ = baseline_round.__doc__
    return wrapper


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


class Engine:
    """One critpath runner, entered, and the baselines on the same engine."""

    def __init__(self, runner, server):
        self.runner = runner
        self.name = runner.name
        self.slots = runner.capacity
        self.server = server
        self.base = baselines_for(runner)

    def run(self, graph: Graph, max_concurrency: int) -> dict:
        from orchestrator.flows.flow import run

        # the baselines share this engine: a Prefect-native run on Ray makes Ray replace
        # workers, and a new worker loads critpath's function on its first call. Untimed.
        if hasattr(self.runner, "warm"):
            self.runner.warm()
        self.server.settle()
        return run(graph, self.runner, max_concurrency=max_concurrency)

    def native(self, graph: Graph, concurrency: int) -> dict | None:
        task_runner = self.base.native_runner(concurrency)
        if task_runner is None:
            return None
        self.server.settle()
        return native_graph(graph, task_runner, self.base.native_options(concurrency))

    def warm_up(self) -> None:
        """One untimed run of each kind: imports, first flow run, worker start-up."""
        g = noop_chain(3)
        self.run(g, self.slots)
        self.native(g, self.slots)
        self.base.chain_round_trip(3)

    def close(self) -> None:
        self.base.close()


# -- 1. critical-path overhead ------------------------------------------------------
class Overhead:
    def __init__(self, engine: Engine, settings: Settings):
        self.e, self.s = engine, settings
        self.graph = noop_chain(settings.hops)
        self.cp: list[float] = []
        self.recorded: list[float] = []
        self.native: list[float] = []
        self.in_engine: list[float] = []
        self.round_trip: list[float] = []
        self.failed = 0
        self.native_failed = 0
        self.unconfirmed = 0  # runs whose final states Prefect had not all stored by the deadline

    def _per_hop(self, seconds: float) -> float:
        return seconds / self.s.hops * 1000

    @guarded
    def baseline_round(self) -> None:
        # one round on Dask and Ray: 70 ms to seconds per hop, noise is not the question there
        if ("overhead", self.e.name) not in self.s.native_skip and (not self.native or self.e.name == "threads"):
            out = self.e.native(self.graph, self.e.slots)
            if out is not None:
                self.native.append(self._per_hop(out["makespan_s"]))
                self.native_failed += out["failed"]
        self.e.server.settle()
        t = self.e.base.chain_in_engine(self.s.hops)
        if t is not None:
            self.in_engine.append(self._per_hop(t))
        self.round_trip.append(self._per_hop(self.e.base.chain_round_trip(self.s.hops)))

    def critpath_round(self) -> dict:
        rep = self.e.run(self.graph, self.e.slots)
        self.cp.append(self._per_hop(rep["makespan_s"]))
        self.recorded.append(self._per_hop(rep["prefect_recorded_s"]))
        self.failed += len(rep["failed"])
        self.unconfirmed += not rep.get("prefect_confirmed", True)
        return rep

    def row(self) -> dict:
        cp, rt = _median(self.cp), _median(self.round_trip)
        target = 2 * rt + 5 if rt is not None else None
        return {"measure": "overhead", "runner": self.e.name, "hops": self.s.hops, "repeats": len(self.cp),
                "concurrency": self.e.slots,
                "critpath_ms_per_hop": cp, "critpath_recorded_ms_per_hop": _median(self.recorded),
                "native": NATIVE_NAME[self.e.name], "native_ms_per_hop": _median(self.native),
                "native_repeats": len(self.native),
                "native_skipped": ("overhead", self.e.name) in self.s.native_skip,
                "raw": RAW_NAME[self.e.name], "raw_in_engine_ms_per_hop": _median(self.in_engine),
                "raw_round_trip_ms_per_hop": rt,
                "native_over_critpath": _ratio(_median(self.native), cp),
                "critpath_over_raw_round_trip": _ratio(cp, rt),
                "target_ms_per_hop": target, "target_met": cp <= target if None not in (cp, target) else None,
                "prefect_unconfirmed": self.unconfirmed, "failed": self.failed, "native_failed": self.native_failed,
                "baseline_errors": getattr(self, "baseline_errors", [])}


# -- 2. fan-out throughput ----------------------------------------------------------
class Throughput:
    def __init__(self, engine: Engine, settings: Settings, concurrency: int | None = None,
                 with_native: bool = True):
        self.e, self.s = engine, settings
        self.concurrency = concurrency or engine.slots
        self.graph = noop_fanout(settings.fanout)
        self.native_n = settings.native_fanout.get(engine.name, 0) if with_native else 0
        self.native_graph = noop_fanout(self.native_n) if self.native_n else None
        self.cp: list[float] = []
        self.recorded: list[float] = []
        self.native: list[float] = []
        self.raw: list[float] = []
        self.failed = 0
        self.native_failed = 0
        self.unconfirmed = 0

    @guarded
    def baseline_round(self) -> None:
        if self.native_graph is not None and (not self.native or self.e.name == "threads"):
            # one round on Dask and Ray: at ~15 services/s a round takes 20 s or more
            out = self.e.native(self.native_graph, self.e.slots)
            if out is not None:
                self.native.append(self.native_n / out["makespan_s"])
                self.native_failed += out["failed"]
        self.e.server.settle()
        self.raw.append(self.s.fanout / self.e.base.fanout(self.s.fanout))

    def critpath_round(self) -> dict:
        rep = self.e.run(self.graph, self.concurrency)
        self.cp.append(len(self.graph) / rep["makespan_s"])
        self.recorded.append(len(self.graph) / rep["prefect_recorded_s"])
        self.failed += len(rep["failed"])
        self.unconfirmed += not rep.get("prefect_confirmed", True)
        return rep

    def row(self) -> dict:
        cp, native, raw = _median(self.cp), _median(self.native), _median(self.raw)
        return {"measure": "throughput", "runner": self.e.name, "concurrency": self.concurrency,
                "services": len(self.graph), "repeats": len(self.cp),
                "critpath_per_s": cp, "critpath_recorded_per_s": _median(self.recorded),
                "native": NATIVE_NAME[self.e.name], "native_services": self.native_n if native else None,
                "native_per_s": native, "raw": RAW_NAME[self.e.name], "raw_per_s": raw,
                "critpath_over_native": _ratio(cp, native), "critpath_over_raw": _ratio(cp, raw),
                "target_per_s": 300, "target_met": cp >= 300 if cp is not None else None,
                "prefect_unconfirmed": self.unconfirmed, "failed": self.failed, "native_failed": self.native_failed,
                "baseline_errors": getattr(self, "baseline_errors", [])}


# -- 3. critical-path efficiency ----------------------------------------------------
@dataclass
class EfficiencyCase:
    """One graph at one concurrency, scaled so its simple lower bound is the target."""

    name: str
    kind: str  # family | trace
    concurrency: int
    graph: Graph
    plan: Plan
    solution: Any = None  # cpsat.Solution
    solver_error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name} @ {self.concurrency}"

    def solve(self, time_limit_s: float) -> None:
        from .cpsat import best_schedule

        if self.solution is None:
            self.solution = best_schedule(self.graph, self.concurrency, time_limit_s)

    def info(self) -> dict:
        sol = self.solution
        best = sol.makespan_s if sol else None
        return {"case": self.name, "kind": self.kind, "concurrency": self.concurrency,
                "services": len(self.graph), "edges": sum(len(p) for p in self.graph.preds),
                "critical_path_s": self.plan.critical_path_s, "total_work_s": self.plan.total_work_s,
                "bound_s": self.plan.lower_bound_s, "constraint": self.plan.constraint,
                "best_s": best, "best_proven_s": sol.bound_s if sol else None,
                "best_status": sol.status if sol else (self.solver_error or "not solved"),
                "solver_s": sol.wall_s if sol else None,
                "simulated_s": self.plan.simulated_makespan_s,
                "simulated_over_best": _ratio(self.plan.simulated_makespan_s, best),
                "best_over_bound": _ratio(best, self.plan.lower_bound_s)}


def efficiency_cases(settings: Settings) -> list[EfficiencyCase]:
    from .graphs import FAMILIES, scaled_to, trace_cases

    builders = {**{n: ("family", b) for n, b in FAMILIES.items()},
                **{n: ("trace", b) for n, b in trace_cases().items()}}
    pairs = settings.cases or [(n, c) for n in builders for c in settings.concurrencies]
    unknown = sorted({n for n, _ in pairs if n not in builders})
    if unknown:
        raise KeyError(f"unknown efficiency case(s) {', '.join(map(repr, unknown))}; "
                       f"known: {', '.join(builders)}")
    cases, built = [], {}
    for name, c in pairs:
        kind, build = builders[name]
        base = built.setdefault(name, build())
        g = scaled_to(base, c, settings.target_s)
        cases.append(EfficiencyCase(name, kind, c, g, make_plan(g, c)))
    return cases


class Efficiency:
    """One case on one runner; baselines only for families without pools, at the
    baseline concurrencies (Prefect and the raw engines have no pool limits)."""

    def __init__(self, engine: Engine, settings: Settings, case: EfficiencyCase):
        self.e, self.s, self.case = engine, settings, case
        self.with_baselines = (case.kind == "family" and not case.graph.pools
                               and case.concurrency in settings.baseline_concurrencies)
        self.with_native = self.with_baselines and (engine.name != "ray"
                                                    or case.name in settings.ray_native_families)
        self.cp: list[float] = []
        self.native: list[float] = []
        self.raw: list[float] = []
        self.failed = 0
        self.native_failed = 0
        self.raw_failed = 0

    @guarded
    def baseline_round(self) -> None:
        if not self.with_baselines or len(self.cp) > 1:  # the first round only (Settings.efficiency_rounds)
            return
        out = self.e.native(self.case.graph, self.case.concurrency) if self.with_native else None
        if out is not None:
            self.native.append(out["makespan_s"])
            self.native_failed += out["failed"]
        self.e.server.settle()
        makespan, results = self.e.base.graph(self.case.graph, self.case.concurrency)
        self.raw.append(makespan)
        self.raw_failed += sum(1 for r in results if r[2] is not None)

    def critpath_round(self) -> dict:
        rep = self.e.run(self.case.graph, self.case.concurrency)
        self.cp.append(rep["makespan_s"])
        self.failed += len(rep["failed"])
        return rep

    def row(self) -> dict:
        info = self.case.info()
        cp = _median(self.cp)
        best, sim, bound = info["best_s"], info["simulated_s"], info["bound_s"]
        native, raw = _median(self.native), _median(self.raw)
        return {"measure": "efficiency", "runner": self.e.name, **info,
                "critpath_s": cp, "critpath_runs_s": list(self.cp),
                "achieved_over_simulated_worst": _ratio(max(self.cp), sim) if self.cp else None,
                "native": NATIVE_NAME[self.e.name], "native_s": native,
                "raw": RAW_NAME[self.e.name], "raw_s": raw,
                "achieved_over_simulated": _ratio(cp, sim), "achieved_over_best": _ratio(cp, best),
                "achieved_over_bound": _ratio(cp, bound),
                "native_over_critpath": _ratio(native, cp), "raw_over_critpath": _ratio(raw, cp),
                "native_over_best": _ratio(native, best), "raw_over_best": _ratio(raw, best),
                "target_met": (cp / sim <= 1.05) if cp and sim else None,
                "simulated_target_met": (sim / best <= 1.05) if best else None,
                "failed": self.failed, "native_failed": self.native_failed, "raw_failed": self.raw_failed,
                "baseline_errors": getattr(self, "baseline_errors", [])}


# -- 5. the bundled refresh ---------------------------------------------------------
def refinery_graph() -> tuple[Graph | None, str | None]:
    """The bundled refresh, or why it cannot be loaded yet."""
    try:
        from orchestrator.inputs.loaders import load_module

        return load_module("services.refinery"), None
    except Exception as exc:  # any import problem means: skip, and say why
        return None, (f"services.refinery is not importable yet ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''})")


class Refresh:
    """The refinery on one runner. Its estimates are rough, so the ratio that counts
    is makespan / the bound recomputed from the measured durations (the report's
    ``measured_lower_bound_s``); the estimate-based bound is shown beside it.
    The baselines run the same functions with ``wait_for`` / native dependencies at
    concurrency = the warehouse pool's limit (they have no pools; every refinery
    service is in that pool, so the limit is the same)."""

    def __init__(self, engine: Engine, settings: Settings, graph: Graph):
        from .baselines import refresh_baselines

        self.e, self.s, self.graph = engine, settings, graph
        self.limit = min([engine.slots, *graph.pools.values()])
        self.baselines = refresh_baselines
        self.reports: list[dict] = []
        self.native: list[dict] = []
        self.raw: list[dict] = []

    @guarded
    def baseline_round(self) -> None:
        if not self.s.refresh_baselines:
            return
        native, raw = self.baselines(self.e, self.graph, self.limit)
        if native is not None:
            self.native.append(native)
        self.raw.append(raw)

    def critpath_round(self) -> dict:
        rep = self.e.run(self.graph, self.e.slots)
        self.reports.append(rep)
        return rep

    def row(self) -> dict:
        rep = sorted(self.reports, key=lambda r: r["makespan_s"])[len(self.reports) // 2]
        native = self.native[0] if self.native else None
        raw = self.raw[0] if self.raw else None
        return {"measure": "refresh", "runner": self.e.name, "services": len(self.graph),
                "concurrency": self.e.slots, "pools": dict(self.graph.pools),
                "makespan_s": rep["makespan_s"], "recorded_s": rep["prefect_recorded_s"],
                "measured_bound_s": rep.get("measured_lower_bound_s"),
                "estimated_bound_s": rep["lower_bound_s"], "simulated_s": rep["simulated_makespan_s"],
                "makespan_over_measured_bound": _ratio(rep["makespan_s"], rep.get("measured_lower_bound_s")),
                "makespan_over_estimated_bound": _ratio(rep["makespan_s"], rep["lower_bound_s"]),
                "native": NATIVE_NAME[self.e.name],
                "native_s": native["makespan_s"] if native else None,
                "native_over_measured_bound": _ratio(native["makespan_s"], native["bound_s"]) if native else None,
                "raw": RAW_NAME[self.e.name], "raw_s": raw["makespan_s"] if raw else None,
                "raw_over_measured_bound": _ratio(raw["makespan_s"], raw["bound_s"]) if raw else None,
                "baseline_concurrency": self.limit,
                "failed": len(rep["failed"]),
                "native_failed": native["failed"] if native else 0, "raw_failed": raw["failed"] if raw else 0,
                "baseline_errors": getattr(self, "baseline_errors", [])}
