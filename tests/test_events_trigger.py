"""Event-triggered, coalesced and guarded serving, against a real Prefect server.

The session's Prefect server (Prefect's own settings: its event triggers, open-source
automations, run). One ``serve`` with no schedule for the first three tests, of:

    extract (held) -> transform -> publish
    extract          -> check

- ``serve`` with no schedule, then ``critpath emit transform``: exactly transform and
  publish ran, in one flow run of the deployment named for why it ran.
- two events while a refresh runs: one follow-up refresh, of the union of their selections;
  the other run they made ended ``Coalesced`` without running anything.
- a manual ``critpath run`` in the same folder: a second one that will not wait is refused,
  and a served refresh waits for the lock before it runs anything.
- a file dropped into a watched folder (``critpath watch``): the refresh ran; a temporary
  file beside it was not taken as a landing.
- a served refresh slower than its interval: refreshes never overlap (the intervals the
  server recorded), and after Ctrl-C the deployment is paused, its trigger disabled, no
  run waits for it and no process is left.
- with ``--collision skip``: the server cancels the events' runs that collide, and the
  refresh running starts one follow-up for the union of their services as it ends.

Nothing here asserts how long something took; every wait is bounded and only keeps a test
from hanging. Every process a test starts is stopped by its process group id.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.helpers.processes import Cli, critpath, wait_until
from tests.helpers.projects import graph_file
from tests.helpers.schedule import max_overlap

pytestmark = pytest.mark.server

GRAPH = [{"name": "extract", "duration": 0.05},
         {"name": "transform", "after": ["extract"], "duration": 0.05},
         {"name": "check", "after": ["extract"], "duration": 0.05},
         {"name": "publish", "after": ["transform"], "duration": 0.05}]
WAIT_S = 150  # bounds each wait on the server; a quiet machine needs a small part of it


@pytest.fixture(scope="module")
def served(prefect_server, tmp_path_factory):
    """``critpath serve`` with no schedule (deployment ``critpath-refresh/on-events``) of the
    project above, ``extract`` taking 3 s; (API URL, project folder). Stopped with Ctrl-C at
    the end of the module, which must leave no process of it running."""
    project = tmp_path_factory.mktemp("served")
    # extract holds until the file ``release`` exists (a test takes it away to hold a refresh)
    hold = {"call": "tests.helpers.services:hang",
            "params": {"seconds": WAIT_S, "ended": str(project / "extract.ended"), "release": str(project / "release"),
                       "pidfile": str(project / "extract.pid")}}
    (project / "release").touch()
    graph_file(project, [{"name": "extract", **hold}, *GRAPH[1:]])
    (project / "landing").mkdir()
    cli = _serve(project, prefect_server, "--name", "on-events", "--debounce", "0.5")
    with cli:
        try:
            yield prefect_server, project
        finally:
            code = _stop(cli)
    assert code in (0, 130) and "Traceback" not in cli.stdout + cli.stderr, cli.stdout + cli.stderr
    wait_until(lambda: not _left_in(project), 60, "every process serve started to end")


def _client(url: str):
    from prefect.client.orchestration import get_client

    from tests.prefect_fixtures import api

    class _Ctx:
        def __enter__(self):
            self.settings = api(url)
            self.settings.__enter__()
            self.client = get_client(sync_client=True).__enter__()
            return self.client

        def __exit__(self, *exc):
            self.client.__exit__(*exc)
            self.settings.__exit__(*exc)

    return _Ctx()


def _runs(url: str, deployment: str) -> list:
    """Every flow run of deployment ``critpath-refresh/<deployment>``, oldest first."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with _client(url) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200, offset=0)


def _services(url: str, flow_run_id) -> dict[str, str]:
    """Task run name -> state type of one flow run."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with _client(url) as client:
        trs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                    sort=TaskRunSort.NAME_ASC, limit=200, offset=0)
    return {t.name: t.state.type.value for t in trs if t.state is not None}


def _final(runs) -> bool:
    return bool(runs) and all(r.state is not None and r.state.is_final() for r in runs)


def _ran(url: str, run, names: set[str]):
    """The run's task runs once all of ``names`` are there and final (the server stores them
    from events, after the flow run ended)."""
    return wait_until(lambda: (lambda s: s if set(s) == names and set(s.values()) == {"COMPLETED"} else None)(
        _services(url, run.id)), 60, f"task runs {sorted(names)} of flow run {run.name!r}")


def _serve(project: Path, url: str, *args: str) -> Cli:
    cli = Cli("serve", "--graph", "g.json", *args, cwd=project, api_url=url, PREFECT_RUNNER_POLL_FREQUENCY="1")
    cli.wait_for_output("serving deployment", 120)
    return cli


def _stop(cli: Cli) -> int:
    """Ctrl-C to serve's process group; its exit status."""
    cli.signal_group(signal.SIGINT)
    code = cli.wait(150)
    if code is None:
        cli.kill()
        pytest.fail("critpath serve did not stop within 150 s of Ctrl-C; its output:\n"
                    + (cli.stdout + cli.stderr)[-3000:])
    return code


def _left_in(project: Path) -> list:
    """Processes still running in the project folder (serve, its runner, refresh processes)."""
    out = []
    for p in psutil.process_iter(["cwd", "pid"]):
        try:
            if p.info["cwd"] and Path(p.info["cwd"]) == project and p.pid != os.getpid():
                out.append(p)
        except psutil.Error:
            continue
    return out


def _emit(url: str, *names: str) -> None:
    from orchestrator.flows.triggers import emit
    from tests.prefect_fixtures import api

    with api(url):
        emit(names, source="test")


def _new_runs(url: str, before: set, count: int) -> list:
    """The deployment's flow runs not in ``before``, once there are ``count`` and all have ended."""
    def ended():
        runs = [r for r in _runs(url, "on-events") if r.id not in before]
        return runs if len(runs) >= count and _final(runs) else None

    return wait_until(ended, WAIT_S, f"{count} new flow run(s) of the deployment to end")


def test_emit_refreshes_exactly_the_service_and_its_downstream_in_one_flow_run(served):
    url, project = served
    before = {r.id for r in _runs(url, "on-events")}
    sent = critpath("emit", "transform", "--graph", "g.json", cwd=project, api_url=url)
    assert sent.returncode == 0, sent.stderr
    runs = _new_runs(url, before, 1)
    assert len(runs) == 1, [(r.name, r.state.name) for r in runs]
    run = runs[0]
    assert run.state.name == "Completed", run.state
    assert run.parameters["event"] == "critpath.service.transform"
    assert run.name == "transform+ updated"
    assert _ran(url, run, {"transform", "publish"}) == {"transform": "COMPLETED", "publish": "COMPLETED"}


def test_two_events_during_a_refresh_become_one_follow_up_of_their_union(served):
    url, project = served
    before = {r.id for r in _runs(url, "on-events")}
    release = project / "release"
    release.unlink()  # the first refresh holds in extract until both events wait behind it
    _emit(url, "extract")
    # running, and past taking over what waited (it renames itself then): what comes now waits
    first = wait_until(lambda: next((r for r in _runs(url, "on-events") if r.id not in before
                                     and r.state is not None and r.state.is_running()
                                     and r.name.endswith("updated")), None),
                       WAIT_S, "the first refresh to run")
    _emit(url, "transform")
    _emit(url, "check")
    try:
        wait_until(lambda: len([r for r in _runs(url, "on-events") if r.id not in before and r.id != first.id
                                and r.state is not None and r.state.type.value == "SCHEDULED"]) == 2,
                   WAIT_S, "both events' runs to wait behind the running refresh")
    finally:
        release.touch()
    runs = _new_runs(url, before, 3)
    by_id = {r.id: r for r in runs}
    assert len(runs) == 3, [(r.name, r.state.name) for r in runs]
    assert _ran(url, by_id[first.id], {"extract", "transform", "check", "publish"})
    others = [r for r in runs if r.id != first.id]
    coalesced = [r for r in others if r.state.name == "Coalesced"]
    follow_ups = [r for r in others if r.state.name == "Completed"]
    assert len(coalesced) == 1 and len(follow_ups) == 1, [(r.name, r.state.name) for r in runs]
    follow_up = follow_ups[0]
    assert _ran(url, follow_up, {"transform", "check", "publish"})
    assert _services(url, coalesced[0].id) == {}  # it never ran
    assert str(follow_up.id) in coalesced[0].state.message
    assert follow_up.name in ("check+, transform+ updated (+1 coalesced)", "transform+, check+ updated (+1 coalesced)")
    # one refresh at a time: the follow-up started after the first had ended
    assert max_overlap([(r.start_time.timestamp(), r.end_time.timestamp())
                        for r in (by_id[first.id], follow_up)]) == 1


def _logs(url: str, flow_run_id) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with _client(url) as client:
        return "\n".join(log.message for log in client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=0))


def test_a_manual_run_and_a_served_refresh_never_share_the_state_folder(served):
    url, project = served
    release, pid, ended = project / "release", project / "extract.pid", project / "extract.ended"
    release.unlink()
    pid.unlink(missing_ok=True)
    before = {r.id for r in _runs(url, "on-events")}
    with Cli("run", "--graph", "g.json", "--select", "extract", cwd=project, api_url=url) as manual:
        try:
            wait_until(pid.exists, WAIT_S, "the manual run's extract to start (it holds the lock then)")
            # a second manual run that will not wait is refused, as bad input
            refused = critpath("run", "--graph", "g.json", "--no-wait", cwd=project, api_url=url)
            assert refused.returncode == 2 and "another refresh holds" in refused.stderr, refused.stderr
            # a served refresh waits for the lock before it runs anything
            _emit(url, "check")
            served_run = wait_until(lambda: next((r for r in _runs(url, "on-events") if r.id not in before
                                                  and r.state is not None and r.state.is_running()), None),
                                    WAIT_S, "the event's refresh to start")
            wait_until(lambda: "another refresh holds" in _logs(url, served_run.id), WAIT_S,
                       "the served refresh to say it waits for the lock")
        finally:
            release.touch()
        assert manual.wait(WAIT_S) == 0, manual.stdout + manual.stderr
    held_until = float(ended.read_text())  # the manual run's extract ended, and its run after it
    [run] = _new_runs(url, before, 1)
    assert run.id == served_run.id and run.state.name == "Completed", run.state
    _ran(url, run, {"check"})
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _client(url) as client:
        [check] = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    assert check.start_time.timestamp() > held_until


def test_a_file_landing_in_a_watched_folder_refreshes_its_service(served):
    url, project = served
    before = {r.id for r in _runs(url, "on-events")}
    landing = project / "landing"
    with Cli("watch", "landing", "--service", "check", "--debounce", "0.5", "--graph", "g.json",
             cwd=project, api_url=url) as watcher:
        try:
            watcher.wait_for_output("ready", 120)
            (landing / "orders.csv.part").write_text("half")  # a partial download: not a landing
            (landing / "orders.csv").write_text("id\n1\n")
            watcher.wait_for_output("sent critpath.service.updated", 60)
            runs = _new_runs(url, before, 1)
        finally:
            watcher.signal_group(signal.SIGINT)
            code = watcher.wait(30)
    assert code == 0, watcher.stdout + watcher.stderr
    assert len(runs) == 1 and runs[0].state.name == "Completed", [(r.name, r.state.name) for r in runs]
    assert _ran(url, runs[0], {"check"})
    assert "landed for check: orders.csv;" in watcher.stderr
    assert ".part" not in watcher.stderr
    assert "stopped watching" in watcher.stderr


def test_a_refresh_slower_than_its_interval_never_overlaps_and_ctrl_c_leaves_nothing(prefect_server, tmp_path):
    events_server = prefect_server
    slow = [dict(GRAPH[0], duration=3.0), *GRAPH[1:]]
    graph_file(tmp_path, slow)
    cli = _serve(tmp_path, events_server, "--name", "slow", "--interval", "1")
    with cli:
        try:
            # one refresh completed, due runs piled up behind it meanwhile, and the next one is in
            # flight: Ctrl-C then (so that its cancel is seen too)
            done = wait_until(lambda: (lambda rs: rs if len(rs) >= 1 else None)(
                [r for r in _runs(events_server, "slow") if r.state is not None and r.state.name == "Completed"
                 and r.start_time is not None]), WAIT_S, "a refresh to complete")
            wait_until(lambda: any(r.state is not None and r.state.is_running()
                                   for r in _runs(events_server, "slow")), WAIT_S, "the next refresh to start")
        finally:
            code = _stop(cli)
    output = cli.stdout + cli.stderr
    assert code in (0, 130), output
    assert "Traceback" not in output and "terminate called" not in output, output[-3000:]
    wait_until(lambda: not _left_in(tmp_path), 60, "every process serve started to end")
    runs = _runs(events_server, "slow")
    ran = [r for r in runs if r.start_time is not None and r.state.name != "Coalesced"]
    assert len(ran) >= 2 and done
    assert max_overlap([(r.start_time.timestamp(), (r.end_time or r.start_time).timestamp()) for r in ran]) == 1
    states = {r.state.type.value for r in runs}
    assert states <= {"COMPLETED", "CANCELLED"}, (  # none waiting or running
        [(r.name, r.state.name, r.state.timestamp) for r in runs], output[-3000:])
    assert any(r.state.type.value == "CANCELLED" and r.start_time is not None for r in runs)  # the one in flight
    with _client(events_server) as client:
        deployment = client.read_deployment(runs[0].deployment_id)
        automations = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
    assert deployment.paused
    assert automations and not any(a.enabled for a in automations)
    assert "removed" in output


def test_with_skip_events_that_collide_are_cancelled_and_followed_up_once(prefect_server, tmp_path):
    url, release = prefect_server, tmp_path / "release"
    hold = {"call": "tests.helpers.services:hang",
            "params": {"seconds": WAIT_S, "ended": str(tmp_path / "extract.ended"), "release": str(release)}}
    graph_file(tmp_path, [{"name": "extract", **hold}, *GRAPH[1:]])
    cli = _serve(tmp_path, url, "--name", "skipping", "--collision", "skip", "--debounce", "0.5")
    with cli:
        try:
            _emit(url, "extract")
            first = wait_until(lambda: next((r for r in _runs(url, "skipping")
                                             if r.state is not None and r.state.is_running()), None),
                               WAIT_S, "the first refresh to run")
            _emit(url, "transform")
            _emit(url, "check")
            try:  # the server cancels both on collision while the first holds the slot
                wait_until(lambda: len([r for r in _runs(url, "skipping") if r.state is not None
                                        and r.state.type.value == "CANCELLED"]) == 2,
                           WAIT_S, "both events' runs to be cancelled on collision")
            finally:
                release.touch()
            runs = wait_until(lambda: (lambda rs: rs if len(rs) == 4 and _final(rs) else None)(
                _runs(url, "skipping")), WAIT_S, "the first refresh and one follow-up to end")
        finally:
            code = _stop(cli)
    assert code in (0, 130), cli.stdout + cli.stderr
    by_state = {}
    for r in runs:
        by_state.setdefault(r.state.type.value, []).append(r)
    assert len(by_state.get("CANCELLED", [])) == 2 and len(by_state.get("COMPLETED", [])) == 2, \
        [(r.name, r.state.name) for r in runs]
    [follow_up] = [r for r in by_state["COMPLETED"] if r.id != first.id]
    assert sorted(follow_up.parameters["event"].split(",")) == ["critpath.service.check", "critpath.service.transform"]
    assert _ran(url, follow_up, {"transform", "check", "publish"})
    assert max_overlap([(r.start_time.timestamp(), r.end_time.timestamp()) for r in by_state["COMPLETED"]]) == 1
    wait_until(lambda: not _left_in(tmp_path), 60, "every process serve started to end")


def test_a_run_whose_process_ended_without_a_final_state_is_cancelled_when_serve_stops(prefect_server, tmp_path):
    """A refresh killed outright (or started just as the runner stopped) never reports its end;
    left Running, it would hold the deployment's only slot. Here such a run is made by hand:
    Running on the server, with no process behind it."""
    import datetime

    from prefect.states import Running, Scheduled

    graph_file(tmp_path, GRAPH)
    cli = _serve(tmp_path, prefect_server, "--name", "orphaned")
    with cli:
        try:
            with _client(prefect_server) as client:
                deployment = client.read_deployment_by_name("critpath-refresh/orphaned")
                orphan = client.create_flow_run_from_deployment(deployment.id, state=Running())
                # and one waiting (an hour from now, so the runner leaves it), which stopping deletes
                later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
                client.create_flow_run_from_deployment(deployment.id, state=Scheduled(scheduled_time=later))
        finally:
            code = _stop(cli)
    output = cli.stdout + cli.stderr
    assert code in (0, 130), output
    assert "Traceback" not in output, output[-3000:]
    wait_until(lambda: not _left_in(tmp_path), 60, "every process serve started to end")
    runs = _runs(prefect_server, "orphaned")
    assert [(r.id, r.state.type.value) for r in runs] == [(orphan.id, "CANCELLED")], \
        ([(r.name, r.state.name) for r in runs], output[-3000:])
    assert "without reporting a final state" in runs[0].state.message
    assert orphan.name in output and "removed 1 run(s)" in output, output[-3000:]
