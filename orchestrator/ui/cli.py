"""The ``critpath`` command: ``plan`` and ``run`` (and the refresh's companions).

Bad input (a graph or config that does not parse or validate, an unknown runner,
service or tag, an unreachable address) ends with one clear message naming the
problem and the fix, exit status 2, and no traceback. That includes what click
itself rejects (an unknown option, a value out of range): ``_Group`` turns click's
usage errors into the same one line, once for every command. A run whose services
failed exits 1; a clean run exits 0.
"""
from __future__ import annotations

import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from ..execution.engines import check_runner
from ..inputs.config import load_config
from ..inputs.project import load_inputs
from ..inputs.project import select as select_services
from ..planning.errors import CritpathError
from ..planning.ranges import DEFAULT_CONCURRENCY, MAX_RETRIES, MAX_SECONDS, MAX_SLOTS
from .choosing import choose_concurrency

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def _fail(message: str) -> None:
    click.echo(f"critpath: error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


@contextmanager
def _one_line():
    """Bad input, ours or click's, as one "critpath: error:" line and exit status 2."""
    try:
        yield
    except CritpathError as exc:
        _fail(str(exc))
    except _HELP:  # a bare 'critpath' (or group) asks for the help page: click prints it
        raise
    except click.ClickException as exc:  # usage errors and bad option values; not --help/--version (Exit)
        ctx = getattr(exc, "ctx", None)
        text = " ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
        _fail(text.rstrip(".") + (f"; see '{ctx.command_path} --help'" if ctx is not None else ""))


class _Group(click.Group):
    """The top-level options are parsed in ``make_context``; every subcommand's
    (nested groups included) inside ``invoke``: both are covered."""

    def make_context(self, *args, **kwargs):
        with _one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _one_line():
            return super().invoke(ctx)


class _FiniteRange(click.FloatRange):
    """A FloatRange that also refuses nan, which compares False to both bounds and so passes them."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


SLOTS = click.IntRange(1, MAX_SLOTS)


def prediction_options(f):
    for opt in reversed([
        click.option("--no-history", is_flag=True, help="Plan from declared estimates only, and record nothing."),
        click.option("--cpu-aware/--no-cpu-aware", default=None,
                     help="Admit services only while their CPU demand fits the cores (default: config, else off)."),
    ]):
        f = opt(f)
    return f


def deadline_option(f):
    return click.option("--deadline", metavar="WHEN",
                        help="Finish by WHEN: HH:MM (local time, its next occurrence), an ISO 8601 date-time, "
                             "or +DURATION from now (+90s, +15m, +2h). Default: deadline in the config.")(f)


def _deadline(given: str | None, cfg, now: float, margin: bool = True):
    """The deadline of ``--deadline`` (else the config's), resolved at ``now``; None without one."""
    text = given or cfg.deadline
    if not text:
        return None
    from ..planning.deadline import resolve

    what = "--deadline" if given else f"deadline ({cfg.path or 'critpath.toml'})"
    return resolve(text, now, margin_s=cfg.deadline_margin if margin else 0.0, what=what)


def graph_options(f):
    opts = [
        click.option("--graph", "graph_file", metavar="FILE",
                     help="Graph file (.json/.toml) or a WfCommons trace."),
        click.option("--module", "modules", metavar="IMPORT.PATH",
                     help="Module(s) of @service functions, comma-separated."),
        click.option("--config", "config_path", metavar="FILE",
                     help="Config file (default: ./critpath.toml or [tool.critpath] in ./pyproject.toml)."),
        click.option("--select", metavar="EXPR",
                     help="name, +name (with upstream), name+ (with downstream), tag:x; comma = union."),
        click.option("--pool", "pools", multiple=True, metavar="NAME=N", help="Pool limit (repeatable)."),
        click.option("--max-concurrency", type=SLOTS, metavar="N",
                     help="Services in flight at once (default: the runner's capacity)."),
        click.option("--time-scale", type=float, metavar="S", help="Multiply synthetic durations and estimates."),
        click.option("--retries", "default_retries", type=click.IntRange(0, MAX_RETRIES),
                     help="Retries for services that set none."),
        click.option("--timeout", "default_timeout", type=_FiniteRange(0, MAX_SECONDS, min_open=True),
                     help="Timeout (s) for services that set none."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="critpath")
def main():
    """Run data services as one Prefect flow, as fast as their longest dependency chain."""


def runner_options(f):
    for opt in reversed([
        click.option("--runner", type=str, help="threads | processes | dask | ray (default: config, else threads)."),
        click.option("--workers", type=SLOTS, help="Engine slots: threads, processes, Dask threads or Ray CPUs."),
        click.option("--address", help="Use an existing Dask scheduler (tcp://host:8786) or Ray cluster (host:6379)."),
    ]):
        f = opt(f)
    return f


@main.command()
@graph_options
@runner_options
@prediction_options
@deadline_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(graph_file, modules, config_path, select, pools, max_concurrency, time_scale, default_retries,
         default_timeout, runner, workers, address, no_history, cpu_aware, deadline, as_json):
    """Validate and plan a graph: critical path, bounds, simulated and predicted makespan."""
    import time

    from ..planning.validate import validate

    now = time.time()
    graph, cfg = load_inputs(graph_file, modules, config_path, pools, time_scale, default_retries,
                             default_timeout)
    due = _deadline(deadline, cfg, now)
    validate(graph)
    runner = runner or cfg.runner
    check_runner(runner)
    graph = select_services(graph, select, cfg)
    p, source = plan_for(graph, cfg, runner, max_concurrency, workers, address or cfg.address, no_history,
                         cfg.cpu_aware if cpu_aware is None else cpu_aware)
    timed = sorted(s.name for s in graph if s.timeout)
    if runner == "threads" and timed:
        click.echo(f"critpath: warning: {len(timed)} service(s) with a timeout run on threads "
                   f"({', '.join(timed[:3])}{', ...' if len(timed) > 3 else ''}): there a timeout frees the slot but "
                   "cannot stop a body that holds the interpreter (a C extension, a catastrophic regex); "
                   "choose --runner processes for such code", err=True)
    from ..planning.deadline import says, verdict

    v = verdict(p, due, now) if due is not None else None
    if as_json:
        extra = {} if v is None else {"deadline": {
            "at": due.at, "given": due.given, "margin_s": due.margin_s, "predicted_finish_at": v.finish_at,
            "slack_s": v.slack_s, "at_risk": v.at_risk, "critical_path": [n for n, _ in v.path],
            "look_at": [n for n, _ in v.look_at()] if v.at_risk else []}}
        click.echo(json.dumps({**p.to_json(), "max_concurrency_source": source, **extra}, indent=1))
        return
    from .render import print_plan

    print_plan(p, source=source)
    if v is not None:
        click.echo(says(v, now=now))


def plan_for(graph, cfg, runner: str, max_concurrency, workers, address, no_history: bool, cpu_aware: bool):
    """The plan ``critpath run`` would make with these options, and where its concurrency came from.
    On a cluster at ``address`` the runner is started to ask it for its cores and capacity."""
    from contextlib import ExitStack

    from ..execution.engines import started
    from ..execution.machines import planning_inputs
    from ..planning.planner import make_plan

    history = None if no_history or not (Path(cfg.state_dir) / "history.sqlite").exists() else _history(cfg, False)
    given = max_concurrency or cfg.max_concurrency or workers or cfg.workers
    chosen = choose_concurrency(graph, runner, given, "--max-concurrency" if max_concurrency else "--workers"
                                if workers else "critpath.toml", address, history)
    with ExitStack() as stack:
        engine = None
        if address:  # the code a run would ship goes now: the cluster is checked for what it lacks
            engine = stack.enter_context(started(runner, workers or cfg.workers or DEFAULT_CONCURRENCY, address,
                                                 shipped_code(graph, cfg, runner, address) or None))
        # the slots a run would start its runner with (see ``run``): a local Dask's layout follows from them
        slots = workers or cfg.workers or chosen.value or DEFAULT_CONCURRENCY
        inputs = planning_inputs(graph, runner, engine, history, workers=slots)
        limit = chosen.value or (engine.capacity if engine is not None else DEFAULT_CONCURRENCY)
        return make_plan(graph, limit, estimates=inputs.estimates, machine=inputs.machine,
                         cpu_aware=cpu_aware), chosen.source


@main.command()
@graph_options
@click.option("--runner", type=str, help="threads | processes | dask | ray (default: config, else threads).")
@click.option("--workers", type=SLOTS, help="Engine slots: threads, processes, Dask threads or Ray CPUs.")
@click.option("--address", help="Use an existing Dask scheduler (tcp://host:8786) or Ray cluster (host:6379).")
@click.option("--json-report", type=click.Path(dir_okay=False), help="Write the run report here.")
@click.option("--progress/--no-progress", default=None, help="Live progress (default: on a terminal).")
@click.option("--resume", is_flag=False, flag_value="last", default=None, metavar="[RUN_ID]",
              help="Run only what had not completed in RUN_ID (default: the last run).")
@click.option("--no-wait", is_flag=True,
              help="If another refresh holds the state folder, refuse (exit 2) instead of waiting for it.")
@prediction_options
@deadline_option
@click.option("--deadline-fails", is_flag=True,
              help="Exit 1 when every service completed but the deadline was missed (default: 0, only late).")
@click.option("--shared-pools/--no-shared-pools", default=None,
              help="Share each pool's limit with every refresh on the Prefect server (PREFECT_API_URL), as the "
                   "global concurrency limit critpath-<pool> (default: shared_pools in the config, else off).")
def run(graph_file, modules, config_path, select, pools, max_concurrency, time_scale, default_retries,
        default_timeout, runner, workers, address, json_report, progress, resume, no_wait, no_history, cpu_aware,
        deadline, deadline_fails, shared_pools):
    """Run the refresh as one Prefect flow run."""
    import time

    now = time.time()  # +DURATION counts from here
    from ..execution.control import RunControl, cancel_on_signals
    from ..execution.ledger import Ledger, make_folder, read_run
    from ..execution.report import write_report
    from ..flows.flow import run as run_graph
    from ..planning.planner import make_plan
    from ..planning.validate import validate
    from .progress import Progress
    from .summary import summary
    from .timeline import write_timeline

    graph, cfg = load_inputs(graph_file, modules, config_path, pools, time_scale, default_retries,
                             default_timeout)
    due = _deadline(deadline, cfg, now)
    runner = runner or cfg.runner
    # absolute now: a service on threads may os.chdir, and the report must land where this says
    report_path = str(Path(json_report or cfg.json_report or Path(cfg.state_dir) / "last-run.json").absolute())
    validate(graph)  # before any engine starts: bad input costs nothing
    check_runner(runner)
    share = cfg.shared_pools if shared_pools is None else shared_pools
    if share:
        from ..flows.settings import prefect_env_defaults
        from ..flows.shared_pools import require_server

        prefect_env_defaults()
        require_server()
    selected = select_services(graph, select, cfg)
    if json_report or cfg.json_report:  # else it is in state_dir, which the ledger checks
        what = "--json-report" if json_report else "json_report"
        make_folder(Path(report_path).parent, f"the folder of {what}", f"give {what} a path in a folder you can write")
    # the state folder is this refresh's until it exits (the kernel releases the lock however
    # it ends): taken before the run to resume is read, so that is the last one finished
    with _state_lock(cfg.state_dir, wait=not no_wait):
        record = read_run(cfg.state_dir, None if resume == "last" else resume) if resume else None
        # every completion of the resumed run is carried over, whatever this run selects, so
        # resuming this run later never repeats any of them; only the selected ones are skipped
        carried = sorted(record.done) if record else []
        done = set(carried) & set(selected.names)
        history = _history(cfg, no_history)
        chosen = choose_concurrency(selected, runner, max_concurrency or cfg.max_concurrency or workers or cfg.workers,
                                    "--max-concurrency" if max_concurrency else "--workers" if workers
                                    else "critpath.toml", address or cfg.address, history)
        rough = make_plan(selected, chosen.value or DEFAULT_CONCURRENCY, simulate_schedule=False)
        code = shipped_code(selected, cfg, runner, address or cfg.address, modules)
        if record:
            _say_how_it_ended(record, resume == "last")
        # the handlers first: once the ledger has named the run (.critpath/last-run-id), a
        # Ctrl-C cancels it and prints the resume command, never a KeyboardInterrupt traceback
        with cancel_on_signals(RunControl()) as control, Ledger(cfg.state_dir, resumed=carried) as ledger:
            if record:
                click.echo(f"critpath: resuming run {record.run_id}: {len(done)} of {len(selected)} services "
                           "already completed", err=True)
            with Progress(len(selected) - len(done), rough.critical_path_s, live=progress) as prog:
                report = run_graph(graph, runner, max_concurrency=max_concurrency or cfg.max_concurrency
                                   or (chosen.value if not (workers or cfg.workers) else None),
                                   workers=workers or cfg.workers or chosen.value, address=address or cfg.address,
                                   select=select or cfg.select, observers=[prog, ledger], json_report=None,
                                   control=control, skip=done, history=history,
                                   cpu_aware=cfg.cpu_aware if cpu_aware is None else cpu_aware,
                                   secrets=cfg.secrets, log_dir=str(ledger.dir / "logs"), run_id=ledger.run_id,
                                   on_plan=lambda p: _say_plan(p, chosen.source, due), deadline=due,
                                   on_deadline_risk=cfg.on_deadline_risk, code=code,
                                   shared_pools=share)
            # the end marker: without it, a resume says what was in flight when this run ended
            ledger.finish("cancelled" if report.get("cancel_reason") else "failed" if report["failed"]
                          else "completed")
        report.update(run_id=ledger.run_id, resumed=sorted(done), resumed_from=record and record.run_id)
        if record and record.in_flight is not None:
            report["resumed_in_flight"] = list(record.in_flight)
        write_report(report, report_path)
        page = write_timeline(report, Path(report_path).with_suffix(".html"))
    click.echo(summary(report))
    click.echo(f"run: {ledger.run_id}\nreport: {report_path}\ntimeline: {page}")
    if report.get("cancel_reason") or report["failed"]:
        click.echo(f"resume with: {resume_command(sys.argv[1:], ledger.run_id)}")
    if report.get("signal"):
        _exit(128 + report["signal"])  # 130 for SIGINT, 143 for SIGTERM
    missed = isinstance(report.get("deadline"), dict) and not report["deadline"].get("met")
    _exit(EXIT_FAILED if report["failed"] or report.get("cancel_reason") or (deadline_fails and missed) else 0)


def shipped_code(graph, cfg, runner: str, address: str | None, modules: str | None = None):
    """The service code a cluster runner ships for ``graph`` (``execution.shipping``), as the
    config says (``ship``, ``requirements``); ``False`` when there is nothing to ship."""
    from ..execution.shipping import code_for

    listed = (modules or "").split(",") if modules else list(cfg.modules)
    return code_for(graph, runner, address, ship=cfg.ship, requirements=cfg.requirements, modules=listed,
                    state_dir=cfg.state_dir) or False


def _exit(status: int) -> None:
    """Exit with ``status`` now that everything is written, even if a service (on threads, in
    this process) left a non-daemon thread running, which would otherwise keep the interpreter
    waiting for it forever after the summary."""
    import threading

    left = [t.name for t in threading.enumerate()
            if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if not left:
        sys.exit(status)
    click.echo(f"critpath: a service left {len(left)} thread(s) running ({', '.join(sorted(left)[:5])}); "
               "exiting without waiting for them", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@contextmanager
def _state_lock(state_dir: str, wait: bool):
    """The state folder's lock (``execution.ledger.StateLock``) for the block. While another
    refresh holds it: say so once and wait, or (``wait=False``) refuse as bad input. Ctrl-C or
    SIGTERM while waiting ends critpath at once (130, 143): nothing has started yet."""
    import signal

    from ..execution.ledger import StateLock

    class _Stop(BaseException):
        pass

    def stop(signum, frame):
        raise _Stop(signum)

    def waiting(path, pid):
        holder = f" (pid {pid})" if pid is not None else ""
        click.echo(f"critpath: another refresh holds {path}{holder}; waiting...", err=True)

    lock = StateLock(state_dir)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        lock.acquire(wait=wait, on_wait=waiting)
    except (_Stop, KeyboardInterrupt) as exc:
        signum = exc.args[0] if isinstance(exc, _Stop) else signal.SIGINT
        click.echo(f"critpath: {signal.Signals(signum).name} received while waiting for {lock.path}; "
                   "nothing was run", err=True)
        sys.exit(128 + signum)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    with lock:
        yield lock


def _say_how_it_ended(record, last: bool) -> None:
    """On stderr, when the run being resumed ended abruptly: what it had in flight then."""
    if record.in_flight is None:
        return
    which = "the last run" if last else f"run {record.run_id}"
    if record.in_flight:
        click.echo(f"critpath: {which} ended abruptly while these were in flight: {', '.join(record.in_flight)}",
                   err=True)
    else:
        click.echo(f"critpath: {which} ended abruptly, with nothing in flight", err=True)


def _history(cfg, no_history: bool):
    """The state folder's duration history, opened (a bad file is one line now, before anything
    runs), or None with --no-history."""
    if no_history:
        return None
    from ..inputs.history import History

    return History(cfg.state_dir, keep_runs=cfg.history_runs).open()


def _say_plan(p, source: str, due) -> None:
    """At the start of a run: the prediction, and against the deadline, the finish and the slack."""
    click.echo(prediction_line(p, source), err=True)
    if due is not None:
        import time

        from ..planning.deadline import says, verdict

        now = time.time()
        click.echo(f"critpath: {says(verdict(p, due, now), now=now)}", err=True)


def prediction_line(p, source: str) -> str:
    """What the plan predicts, said before the run starts."""
    from_history = sum(1 for s in p.estimate_source if s == "history")
    cores = f" on {p.machine.cores:g} cores" if p.machine else ""
    predicted = (f"predicted makespan {p.predicted_makespan_s:.2f} s{cores}" if p.predicted_makespan_s is not None
                 else f"simulated makespan {p.simulated_makespan_s:.2f} s")
    return (f"critpath: {predicted}, max concurrency {p.max_concurrency} ({source}); "
            f"estimates from history for {from_history} of {len(p.graph)} services"
            + ("; cpu-aware" if p.cpu_aware else ""))


@main.command()
@graph_options
@runner_options
@click.option("--cpu-aware/--no-cpu-aware", default=None, help="The current setting's policy (default: config).")
@click.option("--max", "max_limit", type=click.IntRange(1, MAX_SLOTS), metavar="N",
              help="Largest global limit to try (default: 2 x cores, at most the runner's capacity).")
@click.option("--tolerance", type=_FiniteRange(0, 1, min_open=True, max_open=True), default=0.02, show_default=True,
              help="Recommend the smallest setting predicted within this fraction of the best.")
@click.option("--verify", is_flag=True, help="Run real refreshes at the recommended and the current setting.")
@click.option("--write", "write_toml", is_flag=True, help="Store the recommendation in critpath.toml.")
@click.option("--warmup", type=click.IntRange(0, 100), default=0, metavar="N",
              help="Run N refreshes first, to fill the history.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def tune(graph_file, modules, config_path, select, pools, max_concurrency, time_scale, default_retries,
         default_timeout, runner, workers, address, cpu_aware, max_limit, tolerance, verify, write_toml, warmup,
         as_json):
    """Recommend limits from history: predict every setting, pick the smallest near the best."""
    from contextlib import ExitStack

    from ..execution.engines import started
    from ..planning.validate import validate
    from . import tune as t
    from .tune_page import write_page

    graph, cfg = load_inputs(graph_file, modules, config_path, pools, time_scale, default_retries,
                             default_timeout)
    validate(graph)
    t.check_pools(graph, pools)
    runner = runner or cfg.runner
    check_runner(runner)
    graph = select_services(graph, select, cfg)
    address = address or cfg.address
    history = _history(cfg, False)
    aware = cfg.cpu_aware if cpu_aware is None else cpu_aware
    given = max_concurrency or cfg.max_concurrency or workers or cfg.workers
    chosen = choose_concurrency(graph, runner, given, "--max-concurrency", address, history)
    current = t.Setting(chosen.value or DEFAULT_CONCURRENCY, dict(graph.pools), aware)

    def refresh(setting):
        """One real refresh at ``setting``, recorded in history; its report."""
        from ..flows.flow import run as run_graph

        g = type(graph)(graph.declared, setting.pools, graph.source)
        with _state_lock(cfg.state_dir, wait=True):
            return run_graph(g, runner, max_concurrency=setting.max_concurrency,
                             workers=workers or cfg.workers or setting.max_concurrency, address=address,
                             history=history, cpu_aware=setting.cpu_aware, secrets=cfg.secrets,
                             code=shipped_code(g, cfg, runner, address, modules))

    for k in range(warmup):
        t.say(f"warm-up refresh {k + 1} of {warmup} at {current.max_concurrency} slots")
        refresh(current)
    short_by, short = t.history_shortfall(graph, history)
    if short_by:
        raise CritpathError(f"tune: history has too few runs of {len(short)} service(s) ({', '.join(short[:3])}"
                            f"{', ...' if len(short) > 3 else ''}): it needs {t.NEEDED_RUNS} successful runs of each, "
                            f"{short_by} more; run 'critpath run' {short_by} more time(s), or add --warmup {short_by}")
    with ExitStack() as stack:
        engine = stack.enter_context(started(runner, workers or cfg.workers or DEFAULT_CONCURRENCY, address,
                                             shipped_code(graph, cfg, runner, address, modules) or None)) \
            if address else None
        from ..inputs.cores import local_cores

        cores = engine.cores if engine is not None and engine.cores else local_cores()[0]
        cap = engine.capacity if engine is not None else (workers or cfg.workers or 10**9)
        limit = max(1, min(max_limit or max(1, int(round(2 * cores))), cap))
        result = t.predict_all(graph, runner, engine, history, current, limit, tolerance,
                               workers=workers or cfg.workers or current.max_concurrency)
    if verify:
        for name in ("recommended", "current"):
            setting = t.as_setting(result[name])
            if name == "current" and setting == t.as_setting(result["recommended"]):
                continue
            t.say(f"verifying the {name} setting ({setting.max_concurrency} slots"
                  + (", cpu-aware" if setting.cpu_aware else "") + ")")
            report = refresh(setting)
            result["verified"].append({**setting.to_json(), "which": name,
                                       "predicted_makespan_s": result[name]["predicted_makespan_s"],
                                       "measured_makespan_s": report["makespan_s"]})
    page = Path(cfg.state_dir) / "tune.html"
    result["plot"] = str(write_page(result, page, graph.source or "<python>"))
    if write_toml:
        path, created = t.write_config(cfg.path if cfg.path else None, t.as_setting(result["recommended"]))
        t.say(("created " if created else "updated ") + f"{path} with the recommendation")
        result["written"] = str(path)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    click.echo(t.table(result), nl=False)
    rec = result["recommended"]
    click.echo(f"recommended: max concurrency {rec['max_concurrency']}"
               + "".join(f", pool {k}={v}" for k, v in sorted(rec["pools"].items()))
               + (", cpu-aware" if rec["cpu_aware"] else "")
               + f" (predicted {rec['predicted_makespan_s']:.2f} s; current {result['current']['predicted_makespan_s']:.2f} s)")
    for v in result["verified"]:
        click.echo(f"verified {v['which']}: predicted {v['predicted_makespan_s']:.2f} s, "
                   f"measured {v['measured_makespan_s']:.2f} s")
    click.echo(f"plot: {result['plot']}")


@main.command()
@click.argument("names", nargs=-1)
@click.option("--graph", "graph_file", metavar="FILE", help="Graph file (default: from the config).")
@click.option("--module", "modules", metavar="IMPORT.PATH", help="Service module(s) (default: from the config).")
@click.option("--config", "config_path", metavar="FILE", help="Config file.")
@click.option("--runner", help="Which runner's estimates to show (default: config, else threads).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def history(names, graph_file, modules, config_path, runner, as_json):
    """What the duration history holds per service, and the estimate the planner will use."""
    from . import history_view

    graph, cfg = load_inputs(graph_file, modules, config_path, (), None)
    unknown = [n for n in names if n not in graph.services]
    store = _history(cfg, False)
    if unknown and not set(unknown) <= {r["service"] for r in store.rows(unknown)}:
        from ..planning.errors import did_you_mean

        raise CritpathError(f"history: unknown service {unknown[0]!r}{did_you_mean(unknown[0], graph.names)}; "
                            "run 'critpath plan' to list the services")
    data = history_view.summarise(store, graph, list(names), runner or cfg.runner)
    click.echo(json.dumps(data, indent=1) if as_json else history_view.render(data), nl=as_json)


@main.command()
@click.option("--work-pool", "work_pool", required=True, metavar="NAME", help="The Prefect work pool whose workers run it.")
@click.option("--source", required=True, metavar="GIT_URL", help="The project's git repository (https://, ssh, file://).")
@click.option("--ref", metavar="BRANCH_OR_TAG", help="A branch (the latest on every run) or a tag (pinned).")
@click.option("--name", default=None, metavar="NAME", help="Deployment name (default: the ref, else 'git').")
@click.option("--credentials-block", metavar="NAME",
              help="A Prefect Secret block holding the access token of a private repository.")
@click.option("--state-dir", "state_dir", metavar="PATH",
              help="Where runs keep reports and history: an absolute path on the worker's machine "
                   "(default: state_dir in the config, which, if relative, is in each run's clone, deleted "
                   "after the run).")
def deploy(work_pool, source, ref, name, credentials_block, state_dir):
    """Register the refresh as a deployment that pulls the project from git on every run."""
    from ..flows.deploying import deploy as register
    from ..flows.settings import prefect_env_defaults

    prefect_env_defaults()
    name = name or (ref.replace("/", "-") if ref else "git")
    deployment_id, checked = register(name, work_pool, source, ref, credentials_block, state_dir)
    sched = checked.schedule
    when = (f"cron {sched['cron']!r}" if sched.get("cron") else
            f"every {sched['interval']:g} s" if sched.get("interval") else "no schedule (run it on demand)")
    click.echo(f"deployment 'critpath-refresh/{name}' ({deployment_id}): {checked.services} services from {source} at "
               f"{ref or 'its default branch'} (now {checked.commit[:12]}), pulled on every run; {when}")
    kept = state_dir or (checked.state_dir if os.path.isabs(checked.state_dir) else None)
    click.echo(f"reports:   {kept} on the worker's machine" if kept else
               "reports:   in each run's clone, deleted after the run (give --state-dir to keep them)")
    click.echo(f"run it:    prefect deployment run 'critpath-refresh/{name}'\n"
               f"worker:    prefect worker start --pool {work_pool}")


def resume_command(args: list[str], run_id: str) -> str:
    """The command line that resumes ``run_id``: ``args`` as given, with any ``--resume``
    of their own (and the run id it named) replaced by ``--resume run_id``."""
    import shlex

    kept, rest = [], iter(args)
    for a in rest:
        if a == "--resume":
            # click reads the next word as the option's value unless it looks like an option
            nxt = next(rest, None)
            if nxt is not None and nxt.startswith("-"):
                kept.append(nxt)
        elif not a.startswith("--resume="):
            kept.append(a)
    return f"critpath {shlex.join(kept)} --resume {run_id}"


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Where to write the timeline page (default: PATH with .html).")
def report(path, html_path):
    """Re-render the summary and the timeline page from a saved JSON report."""
    from ..execution.report import read_report
    from .summary import summary
    from .timeline import write_timeline

    data = read_report(path)
    target = html_path or Path(path).with_suffix(".html")
    try:
        page = write_timeline(data, target)
    except OSError as exc:  # a folder that cannot be created or written
        raise CritpathError(f"timeline {str(target)!r}: cannot write it ({exc.strerror or exc}); give --html "
                            "a path in a folder you can write") from None
    click.echo(summary(data))
    click.echo(f"timeline: {page}")


@main.command()
@click.option("--graph", "graph_file", metavar="FILE", help="Graph file (default: from the config).")
@click.option("--module", "modules", metavar="IMPORT.PATH", help="Service module(s) (default: from the config).")
@click.option("--config", "config_path", metavar="FILE", help="Config file.")
@click.option("--select", metavar="EXPR", help="Serve part of the graph.")
@click.option("--runner", help="threads | processes | dask | ray.")
@click.option("--workers", type=SLOTS)
@click.option("--max-concurrency", type=SLOTS)
@click.option("--address")
@click.option("--cron", help='Cron schedule, e.g. "0 2 * * *" (default: [schedule] in the config).')
@click.option("--interval", type=_FiniteRange(1, MAX_SECONDS), help="Run every N seconds instead of a cron.")
@click.option("--timezone", metavar="ZONE", help='Time zone of the cron schedule, e.g. "Europe/Paris" '
              "(default: [schedule] timezone in the config, else UTC).")
@click.option("--name", default="scheduled", show_default=True, help="Deployment name.")
@click.option("--deadline", metavar="WHEN", help="Each run must finish by WHEN: HH:MM (its next occurrence after "
              "the run starts), an ISO 8601 date-time, or +DURATION from the run's start. Default: the config's.")
@click.option("--collision", type=click.Choice(["queue", "skip"]),
              help="A refresh due while another runs: queue (wait for it) or skip. Default: serve_collision "
                   "in the config, else queue.")
@click.option("--debounce", type=_FiniteRange(0, MAX_SECONDS, min_open=True), metavar="SECONDS",
              help="Events this close together become one refresh (default: debounce in the config, else 2).")
def serve(graph_file, modules, config_path, select, runner, workers, max_concurrency, address, cron, interval,
          timezone, name, deadline, collision, debounce):
    """Serve the refresh as a Prefect deployment: on a schedule if one is given, and on
    critpath.service.updated events (critpath emit, critpath watch); Ctrl-C stops it."""
    import time

    from ..planning.validate import validate

    graph, cfg = load_inputs(graph_file, modules, config_path, (), None)
    # each run resolves it as it starts; here only what no run could use is refused
    _deadline(deadline, cfg, time.time(), margin=False)
    validate(graph)  # refuse to serve a graph that can never run
    if not select_services(graph, select, cfg):
        raise CritpathError(f"--select {select or cfg.select!r}: selects no service; nothing would be served")
    check_runner(runner or cfg.runner)
    if cron is None and interval is None:
        cron, interval = cfg.schedule.get("cron"), cfg.schedule.get("interval")
    if cron is not None and interval is not None:
        raise CritpathError("give either a cron or an interval schedule, not both")
    from ..inputs.config import is_time_zone

    timezone = timezone or cfg.schedule.get("timezone")
    if timezone is not None and not is_time_zone(timezone):
        raise CritpathError(f"--timezone {timezone!r}: not a time zone this machine knows; give an IANA name "
                            'such as "Europe/Paris" or "America/New_York"')
    if cron is not None:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=cron)
        except ValueError:
            raise CritpathError(f"--cron {cron!r}: not a valid cron expression, e.g. \"0 2 * * *\"") from None
    params = {k: v for k, v in dict(folder=os.getcwd(), config=config_path, graph=graph_file, modules=modules,
                                    runner=runner, select=select, max_concurrency=max_concurrency,
                                    workers=workers, address=address, deadline=deadline).items() if v is not None}
    from ..flows.serving import serve_forever
    from ..flows.settings import prefect_env_defaults

    prefect_env_defaults()
    status = serve_forever(name, cron, interval, params, timezone, collision=collision or cfg.serve_collision,
                           debounce=debounce or cfg.debounce)
    click.echo("critpath: stopped serving", err=True)
    sys.exit(status)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=4200, show_default=True, type=click.IntRange(1, 65535))
@click.option("--config", "config_path", metavar="FILE", help="Config file (for state_dir).")
def server(host, port, config_path):
    """Start a Prefect server with its database in the local state folder (Ctrl-C or SIGTERM stops it)."""
    from ..execution.ledger import make_folder
    from ..flows.server import serve_foreground
    from ..flows.serving import server_command

    cfg = load_config(config_path)
    make_folder(cfg.state_dir)  # Prefect's own error for it is a traceback in the server process
    cmd, env = server_command(cfg.state_dir, host, port)
    click.echo(f"critpath: Prefect server on http://{host}:{port} (data in {cfg.state_dir}/prefect); "
               f"in another shell: export PREFECT_API_URL=http://{host}:{port}/api", err=True)
    # stopped by a signal here, the server and everything it started stop first, then this
    # process exits (0 for Ctrl-C, 143 for SIGTERM); the port is free once it has
    sys.exit(serve_foreground(cmd, env))


from benchmarks.cli import bench as _bench  # the benchmarks live in benchmarks/

from .watching import emit as _emit  # critpath emit / watch: sending critpath.service.updated
from .watching import watch as _watch

main.add_command(_bench)
main.add_command(_emit)
main.add_command(_watch)
