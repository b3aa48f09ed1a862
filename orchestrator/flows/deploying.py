"""``critpath deploy``: the refresh as a Prefect deployment whose code is pulled from git on every run.

No image is built per change. The deployment runs critpath's own flow
(``orchestrator.flows.serving.refresh``, installed where the worker runs), and its pull
steps clone the project's repository at a ref (a branch for "the latest", a tag for a
pinned version) into the run's folder on the worker and step into it, so each run
loads the graph and ``critpath.toml`` of that ref, as ``critpath run`` would in a checkout
of it. A ``prefect worker start --pool NAME`` picks the runs up.

Before anything is registered, the ref is cloned here once (shallow) to check that the
source is a git repository, that the ref exists, and that its graph and configuration
load and validate; the schedule comes from that ref's ``critpath.toml``. A private
repository's token comes from a Prefect Secret block named by ``--credentials-block``:
the pull step holds only a template naming the block, which the worker resolves when a
run starts, so the token is never on the command line, in the deployment or in its
parameters.

A process worker runs each flow run in a temporary folder that it deletes afterwards,
clone included. ``--state-dir`` (an absolute path on the worker's machine, a deployment
parameter) keeps the runs' reports and duration history there instead, so that a
deployed refresh, like ``critpath run``, leaves its report behind and plans from the
history of the runs before it.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

from ..planning.errors import CritpathError

ENTRYPOINT = "orchestrator.flows.serving.refresh"


@dataclass(frozen=True)
class Checked:
    ref: str
    commit: str
    schedule: dict
    services: int
    state_dir: str  # the config's at that ref


def _git(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for a password nobody types
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def check_source(source: str, ref: str | None) -> Checked:
    """Clone ``source`` at ``ref`` into a temporary folder and load its project there."""
    from ..inputs.project import load_inputs
    from ..planning.validate import validate

    probe = _git("ls-remote", source)
    if probe.returncode != 0:
        raise CritpathError(f"--source {source!r} is not a git repository critpath can read "
                            f"({(probe.stderr.strip().splitlines() or ['git ls-remote failed'])[-1]}); give a git URL, "
                            "e.g. https://github.com/team/project.git or file:///path/to/repo")
    with tempfile.TemporaryDirectory(prefix="critpath-deploy-") as tmp:
        args = ["clone", "--quiet", "--depth", "1"] + (["--branch", ref] if ref else []) + [source, tmp]
        cloned = _git(*args)
        if cloned.returncode != 0:
            raise CritpathError(f"--ref {ref!r}: not a branch or tag of {source!r}; list them with "
                                f"'git ls-remote {source}'")
        commit = _git("rev-parse", "HEAD", cwd=tmp).stdout.strip()
        here = os.getcwd()
        os.chdir(tmp)
        try:
            graph, cfg = load_inputs(None, None, None, (), None)
            validate(graph)
        except CritpathError as exc:
            raise CritpathError(f"{source} at {ref or 'its default branch'}: {exc}") from None
        finally:
            os.chdir(here)
        return Checked(ref or "", commit, dict(cfg.schedule), len(graph), cfg.state_dir)


def check_state_dir(state_dir: str | None) -> None:
    if state_dir is not None and not os.path.isabs(state_dir):
        raise CritpathError(f"--state-dir {state_dir!r}: must be an absolute path on the worker's machine, "
                            "e.g. /var/lib/critpath; a relative one would be inside each run's clone, "
                            "which the worker deletes after the run")


def pull_steps(source: str, ref: str | None, credentials_block: str | None) -> list[dict]:
    clone = {"id": "clone", "repository": source}
    if ref:
        clone["branch"] = ref
    if credentials_block:  # resolved by the worker when the run starts
        clone["access_token"] = "{{ prefect.blocks.secret." + credentials_block + " }}"
    return [{"prefect.deployments.steps.git_clone": clone},
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ clone.directory }}"}}]


async def _deploy(name: str, work_pool: str, source: str, ref: str | None, credentials_block: str | None,
                  state_dir: str | None, checked: Checked) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.callables import parameter_schema

    from .serving import refresh, schedule_of

    async with get_client() as client:
        try:
            await client.read_work_pool(work_pool)
        except ObjectNotFound:
            raise CritpathError(f"--work-pool {work_pool!r} does not exist on {client.api_url}; create it with "
                                f"'prefect work-pool create {work_pool} --type process'") from None
        if credentials_block:
            try:
                await client.read_block_document_by_name(credentials_block, "secret")
            except ObjectNotFound:
                raise CritpathError(f"--credentials-block {credentials_block!r}: no Prefect Secret block of that "
                                    "name; create one holding the access token (prefect block create secret)") \
                    from None
        flow_id = await client.create_flow(refresh)
        sched = checked.schedule
        schedules = []
        if sched.get("cron") is not None or sched.get("interval") is not None:
            s = schedule_of(sched.get("cron"), sched.get("interval"), sched.get("timezone"))
            schedules = [DeploymentScheduleCreate(schedule=_server_schedule(s), active=True)]
        parameters = {"folder": ".", **({"state_dir": state_dir} if state_dir else {})}
        deployment_id = await client.create_deployment(
            flow_id=flow_id, name=name, work_pool_name=work_pool, entrypoint=ENTRYPOINT,
            pull_steps=pull_steps(source, ref, credentials_block), parameters=parameters,
            parameter_openapi_schema=parameter_schema(refresh).model_dump_for_openapi(),
            schedules=schedules, version=checked.commit[:12] or None,
            description=f"critpath refresh of {source} at {ref or 'its default branch'}, pulled on every run",
            enforce_parameter_schema=False)
        return str(deployment_id)


def _server_schedule(s):
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    if s.cron is not None:
        return CronSchedule(cron=s.cron, timezone=s.timezone)
    return IntervalSchedule(interval=s.interval, timezone=s.timezone)


def deploy(name: str, work_pool: str, source: str, ref: str | None, credentials_block: str | None,
           state_dir: str | None = None) -> tuple[str, Checked]:
    """Check the source at ``ref``, then register the deployment; returns (its id, what was checked)."""
    import asyncio

    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise CritpathError("critpath deploy needs a Prefect server: start one ('critpath server') and set "
                            "PREFECT_API_URL, e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api")
    check_state_dir(state_dir)
    checked = check_source(source, ref)
    return asyncio.run(_deploy(name, work_pool, source, ref, credentials_block, state_dir, checked)), checked
