"""``critpath bench``: run the benchmarks and print one table per measure.

    critpath bench                         # everything (~40 min on 2 cores)
    critpath bench --quick                 # the CI subset (< 5 min)
    critpath bench --only overhead,throughput --runners threads,dask
    critpath bench --quick --json out/bench-quick.json --check

Order of a run: the CP-SAT solutions and the planner measure first (no engine
running, no server), then one Prefect server for everything else, then for each
runner: start it once, warm it up, and run every measure on it with its
baselines interleaved round by round; then the same runner at the high
concurrency for the throughput measure. ``--check`` exits 1 only on a broken
invariant (``benchmarks.check``), never on a missed target.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

import click

MEASURES = ("overhead", "throughput", "efficiency", "planner", "refresh", "prediction", "freshness")
RUNNERS = ("threads", "processes", "dask", "ray")


def _choices(option: str, value: str | None, known: tuple[str, ...]) -> tuple[str, ...] | None:
    from orchestrator.planning.errors import CritpathError, did_you_mean

    if value is None:
        return None
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in chosen if v not in known]
    if bad or not chosen:
        hint = did_you_mean(bad[0], known) if bad else ""
        raise CritpathError(f"{option} {value!r}: unknown {', '.join(map(repr, bad)) or 'empty list'}{hint}; "
                            f"choose from {','.join(known)}")
    return chosen


def _quiet_prefect_console() -> None:
    """Keep Prefect's per-flow-run INFO lines (hundreds of runs) off the console; its
    API log handler is untouched, so every run's logs still reach the server."""
    import logging

    # the same for engine worker processes started from here (Prefect-native task runs
    # log on Dask and Ray workers, whose console is this one)
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    import prefect  # noqa: F401 - configures Prefect's logging
    from prefect.logging.handlers import PrefectConsoleHandler

    for lg in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict))]:
        for h in getattr(lg, "handlers", ()):
            if isinstance(h, PrefectConsoleHandler):
                h.setLevel(logging.WARNING)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("critpath", "prefect", "prefect-dask", "prefect-ray", "distributed", "ray", "ortools"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


class Bench:
    """Runs the chosen measures and collects their rows (one list per measure)."""

    def __init__(self, settings, log):
        self.s = settings
        self.log = log
        self.results: dict[str, list[dict]] = {m: [] for m in (*MEASURES, "errors")}

    def _case(self, measure: str, label: str, case, rounds: int, runner: str = "-") -> None:
        t0 = time.monotonic()
        try:
            for _ in range(rounds):  # interleaved: critpath, then the baselines, round after round
                case.critpath_round()
                case.baseline_round()
            row = case.row()
        except Exception as exc:  # a measurement that breaks is a row, and --check says so
            row = {"measure": measure, "runner": runner, "error": f"{type(exc).__name__}: {exc}"}
            if hasattr(case, "case"):
                row.update(case=case.case.name, concurrency=case.case.concurrency)
            self.log(f"[red]{measure} {label}: {row['error']}[/]")
        self.results[measure].append(row)
        self.log(f"{measure:10} {label} ({time.monotonic() - t0:.0f} s, load {os.getloadavg()[0]:.1f})")

    def run(self) -> dict[str, list[dict]]:
        from .measures import efficiency_cases

        s = self.s
        cases = []
        if "efficiency" in s.measures:
            from .cpsat import MISSING

            try:
                import ortools  # noqa: F401
            except ImportError:
                from orchestrator.planning.errors import CritpathError

                raise CritpathError(MISSING) from None
            cases = efficiency_cases(s)
            t0 = time.monotonic()
            for c in cases:
                c.solve(s.solver_time_limit_s)
            self.log(f"solver     {len(cases)} cases, {s.solver_time_limit_s:g} s limit each "
                     f"({time.monotonic() - t0:.0f} s, {sum(c.solution.optimal for c in cases)} proven optimal)")
        if "planner" in s.measures:
            from .planner_scale import Planner

            for n in s.planner_sizes:
                self._case("planner", f"{n:,} services", Planner(n, s.planner_memory), 1)
        engine_measures = {"overhead", "throughput", "efficiency", "refresh", "prediction",
                           "freshness"} & set(s.measures)
        if engine_measures:
            from .server import bench_environment

            with bench_environment() as server:
                self.log(f"server     prefect server at {server.url}")
                if s.refresh_scale is not None:
                    os.environ["CRITPATH_SCALE"] = str(s.refresh_scale)
                for name in s.runners if engine_measures - {"freshness"} else ():  # freshness serves its own
                    self._runner(name, server, cases)
                if "freshness" in s.measures:
                    self._freshness(server)
        return self.results

    def _freshness(self, server) -> None:
        """``critpath serve`` of the refinery per served runner, started and stopped around its rounds."""
        from .freshness import Freshness

        served = [r for r in self.s.runners if r in self.s.freshness_runners]
        if not served:
            self.log(f"freshness  skipped: it serves the refresh on {', '.join(self.s.freshness_runners)} only")
        for name in served:
            t0 = time.monotonic()
            try:
                with Freshness(server, self.s, name) as case:
                    self.log(f"freshness  {name}: serving, warehouse built ({time.monotonic() - t0:.0f} s)")
                    self._case("freshness", name, case, self.s.freshness_rounds, name)
            except Exception as exc:  # serve would not start: a row, and --check says so
                self.results["freshness"].append({"measure": "freshness", "runner": name,
                                                  "error": f"{type(exc).__name__}: {exc}"})
                self.log(f"[red]freshness  {name}: {type(exc).__name__}: {exc}[/]")

    def _runner(self, name: str, server, cases) -> None:
        from orchestrator.execution.engines import started

        from .graphs import noop_fanout
        from .measures import Efficiency, Engine, Overhead, Refresh, Throughput, refinery_graph

        s = self.s
        t0 = time.monotonic()
        try:
            with started(name, s.slots, None) as runner:
                engine = Engine(runner, server)
                try:
                    engine.warm_up()
                    self.log(f"runner     {name}: {runner.capacity} slots, started and warm "
                             f"({time.monotonic() - t0:.0f} s)")
                    if "overhead" in s.measures:
                        self._case("overhead", name, Overhead(engine, s), s.overhead_repeats, name)
                    if "throughput" in s.measures:
                        self._case("throughput", f"{name} @ {engine.slots}", Throughput(engine, s),
                                   s.throughput_repeats, name)
                    if "efficiency" in s.measures:
                        for case in cases:
                            self._case("efficiency", f"{name} {case.key}", Efficiency(engine, s, case), s.efficiency_rounds, name)
                    if "refresh" in s.measures:
                        graph, why = refinery_graph()
                        if graph is None:
                            self.results["refresh"].append({"measure": "refresh", "runner": name, "skipped": why})
                            self.log(f"refresh    {name}: skipped, {why}")
                        else:
                            self._case("refresh", name, Refresh(engine, s, graph), 1, name)
                    if "prediction" in s.measures and name in s.prediction_runners:
                        from .prediction import Prediction, graphs

                        for label, graph in graphs(s):
                            self._case("prediction", f"{name} {label}", Prediction(engine, s, graph, label), 1, name)
                finally:
                    engine.close()
            if "throughput" in s.measures and s.high_concurrency and s.high_concurrency != s.slots:
                with started(name, s.high_concurrency, None) as runner:
                    engine = Engine(runner, server)
                    try:
                        engine.run(noop_fanout(runner.capacity), runner.capacity)  # warm every worker
                        self._case("throughput", f"{name} @ {runner.capacity}",
                                   Throughput(engine, s, runner.capacity, with_native=False), 1, name)
                    finally:
                        engine.close()
        except Exception as exc:  # e.g. the engine would not start: the other runners go on
            self.results["errors"].append({"measure": "runner", "runner": name,
                                           "error": f"{type(exc).__name__}: {exc}"})
            self.log(f"[red]runner     {name}: {type(exc).__name__}: {exc}[/]")


def _sorted_efficiency(rows: list[dict], runners: tuple[str, ...]) -> list[dict]:
    order = {}
    for r in rows:
        order.setdefault((r.get("case"), r.get("concurrency")), len(order))
    rank = {n: i for i, n in enumerate(runners)}
    return sorted(rows, key=lambda r: (order[(r.get("case"), r.get("concurrency"))], rank.get(r.get("runner"), 99)))


@click.command("bench")
@click.option("--quick", is_flag=True, help="The CI subset: every measure but freshness, fewer cases and repeats "
              "(< 5 min).")
@click.option("--only", metavar="LIST", help=f"Measures to run, comma-separated: {','.join(MEASURES)}.")
@click.option("--runners", metavar="LIST", help=f"Runners, comma-separated: {','.join(RUNNERS)}.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every row and the checks here.")
@click.option("--check", is_flag=True, help="Exit 1 on a broken invariant (never on a missed target).")
@click.option("--solver-time-limit", type=click.FloatRange(min=0.1), metavar="S",
              help="CP-SAT time limit per efficiency case (default 10 s; quick 2 s).")
@click.option("--cases", metavar="LIST",
              help="Efficiency cases as NAME@CONC, comma-separated (default: every family and trace at 2, 4, 8).")
@click.option("--efficiency-rounds", type=click.IntRange(min=1), metavar="N",
              help="critpath's refreshes per efficiency case; the median counts (default 3; quick 1).")
def bench(quick, only, runners, json_path, check, solver_time_limit, cases, efficiency_rounds):
    """Benchmarks: critpath beside Prefect-native task runners and the raw engines."""
    from rich.console import Console

    from . import check as checks
    from .measures import Settings
    from .tables import print_tables

    settings = Settings.quick_set() if quick else Settings()
    settings.measures = _choices("--only", only, MEASURES) or settings.measures
    settings.runners = _choices("--runners", runners, RUNNERS) or settings.runners
    if solver_time_limit:
        settings.solver_time_limit_s = solver_time_limit
    if efficiency_rounds:
        settings.efficiency_rounds = efficiency_rounds
    if cases:
        from orchestrator.planning.errors import CritpathError

        pairs = []
        for item in cases.split(","):
            name, sep, conc = item.strip().rpartition("@")
            if not sep or not name or not conc.isdigit() or int(conc) < 1:
                raise CritpathError(f"--cases {item!r}: write NAME@CONC, e.g. 'chain + shorts@2'")
            pairs.append((name, int(conc)))
        settings.cases = tuple(pairs)
    console = Console(width=max(Console().width, 180))
    err = Console(stderr=True)
    import signal

    # a CI timeout's SIGTERM unwinds like Ctrl-C: the server and the engines are stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    _quiet_prefect_console()
    load_before = os.getloadavg()
    started_at = datetime.now(timezone.utc)
    err.print(f"critpath bench{' --quick' if quick else ''}: {', '.join(settings.measures)} on "
              f"{', '.join(settings.runners)}; {os.cpu_count()} cores, load {load_before[0]:.2f} "
              f"{load_before[1]:.2f} {load_before[2]:.2f}")
    t0 = time.monotonic()
    try:
        results = Bench(settings, lambda msg: err.print(msg)).run()
    except KeyError as exc:
        from orchestrator.planning.errors import CritpathError

        raise CritpathError(str(exc.args[0])) from None
    results["efficiency"] = _sorted_efficiency(results["efficiency"], settings.runners)
    rows = [r for rs in results.values() for r in rs]
    load_after = os.getloadavg()
    print_tables(results, console)
    broken, missed, warned = checks.broken(rows), checks.missed(rows), checks.warnings(rows)
    for title, items, style in (("targets missed", missed, "yellow"), ("baseline problems", warned, "yellow"),
                                ("BROKEN INVARIANTS", broken, "bold red")):
        if items:
            console.print(f"[{style}]{title} ({len(items)}):[/]")
            for line in items:
                console.print(f"  {line}")
    wall = time.monotonic() - t0
    console.print(f"{len(rows)} rows in {wall / 60:.1f} min; load average before {load_before[0]:.2f} "
                  f"(1 min) / {load_before[2]:.2f} (15 min), after {load_after[0]:.2f} / {load_after[2]:.2f}; "
                  f"{len(broken)} broken invariant(s), {len(missed)} target(s) missed")
    if json_path:
        from dataclasses import asdict

        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        doc = {"meta": {"started_at": started_at.isoformat(), "wall_s": wall, "quick": quick,
                        "cores": os.cpu_count(), "load_before": load_before, "load_after": load_after,
                        "machine": platform.platform(), "versions": _versions(), "argv": sys.argv[1:],
                        "settings": asdict(settings)},
               "results": results, "broken": broken, "missed": missed, "warnings": warned}
        from orchestrator.support.files import write_text

        write_text(json_path, json.dumps(doc, indent=1, default=str))
        console.print(f"json: {json_path}")
    if check and broken:
        sys.exit(1)
