"""Secrets in every form: a credential with a backslash and a quote never leaves a worker in
any of the shapes a log line or an error gives it.

    leaky (reads the secret, logs it raw, %r, f"{s!r}", in a dict, json.dumps, %a, in another
           library's WARNING, in a logged KeyError's traceback; raises KeyError(s)) -> leaky_child
    fine

The value ``hunter2'\\xyz...`` is escaped by ``repr()`` (``hunter2'\\\\xyz``) and by JSON: masking
the raw value alone let those forms through. A run's secrets are masked on every worker from
its first service: those declared (``Dispatcher(secrets=...)``, the config's ``secrets``) and
those any worker read through ``secret()``, even on a worker whose service reads the
environment variable itself.

Driven by the dispatcher directly; the texts checked are what leaves a worker (each attempt's
log lines, error and traceback: Prefect's logs and states, the console and the timeline are
made from them), the JSON report, and on threads every log record critpath's own process
created. Masking covers logging, error texts and tracebacks, not ``print()``.
Nothing asserts a duration.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.execution.dispatcher import Dispatcher
from orchestrator.execution.report import build_report
from orchestrator.inputs.config import load_config
from orchestrator.planning.errors import CritpathError
from orchestrator.planning.graph import Graph
from orchestrator.planning.model import Service
from orchestrator.planning.planner import make_plan
from runners import make_runner
from runners.processes import ProcessRunner

BODIES = "tests.helpers.worker_faults"
TOKEN = uuid.uuid4().hex[:8]
#: name -> value: read through secret() (by its lower-case name), declared, learned, and a control
SECRETS = {
    f"critpath_forms_{TOKEN}": f"hunter2'\\xyz-{TOKEN}",
    f"critpath_declared_{TOKEN}": f"s3cr'\\et\"é-{TOKEN}",  # both quotes and a non-ASCII letter
    f"critpath_learned_{TOKEN}": f"le'\\arned-{TOKEN}",
    f"critpath_control_{TOKEN}": f"con'\\trol-{TOKEN}",
}
FORMS_NAME, DECLARED_NAME, LEARNED_NAME, CONTROL_NAME = SECRETS


def forms(value: str) -> dict[str, str]:
    """Every shape of ``value`` that a log line, an error or a JSON document may hold."""
    return {
        "raw": value,
        "repr": repr(value)[1:-1],
        "repr, in single quotes": repr(value + '"')[1:-2],
        "repr, in double quotes": repr(value + '"')[1:-2].replace("\\'", "'").replace('"', '\\"'),
        "ascii": ascii(value)[1:-1],
        "json": json.dumps(value)[1:-1],
        "json, unicode": json.dumps(value, ensure_ascii=False)[1:-1],
        "json of repr": json.dumps(repr(value))[1:-1],  # a repr form inside the JSON report
    }


def leaks(texts: dict[str, str], value: str) -> list[str]:
    """``"where: form"`` for every form of ``value`` found in any of ``texts``."""
    return [f"{where}: {kind}" for where, text in texts.items() for kind, form in forms(value).items()
            if form in text]


class Outcomes:
    """Observer: every outcome a worker sent back (each attempt's logs, error, traceback)."""

    def __init__(self):
        self.by_name: dict[str, list] = {}

    def on_event(self, kind, run, t, **info):
        if info.get("outcome") is not None:
            self.by_name.setdefault(run.name, []).append(info["outcome"])

    def texts(self) -> dict[str, str]:
        return {f"{name} outcome": "\n".join([*(m for o in outs for *_, m in o.logs),
                                              *(o.error or "" for o in outs), *(o.traceback or "" for o in outs)])
                for name, outs in self.by_name.items()}


class Records(logging.Handler):
    """Every log record critpath's own process creates (the threads runner's workers are its threads)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture(scope="module", autouse=True)
def environment():
    """The secrets in the environment before any engine starts (worker processes copy it then)."""
    before = {name.upper(): os.environ.get(name.upper()) for name in SECRETS}
    os.environ.update({name.upper(): value for name, value in SECRETS.items()})
    yield
    for var, value in before.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


def refresh(graph: Graph, runner, slots: int, secrets=()):
    outcomes, records = Outcomes(), Records()
    root = logging.getLogger()
    root.addHandler(records)
    try:
        plan = make_plan(graph, slots)
        dispatcher = Dispatcher(plan, runner, [outcomes], secrets=secrets)
        runs = dispatcher.run()
    finally:
        root.removeHandler(records)
    report = build_report(plan, runs, dispatcher, runner.name, None)
    texts = {**outcomes.texts(), "report": json.dumps(report), "errors": json.dumps(
        {n: [r.error, r.traceback] for n, r in runs.items()})}
    if runner.name == "threads":
        texts["critpath's own log records"] = "\n".join(records.lines)
    return SimpleNamespace(runs=runs, texts=texts, outcomes=outcomes, report=report)


@pytest.fixture(scope="module")
def leaked(runner_name):
    graph = Graph([Service("leaky", call=f"{BODIES}:leak_forms", params={"name": FORMS_NAME}),
                   Service("leaky_child", after=("leaky",), duration=0.05), Service("fine", duration=0.05)])
    with make_runner(runner_name, 2) as runner:
        return refresh(graph, runner, 2)


def test_a_secret_read_through_secret_is_masked_in_every_form(leaked):
    value = SECRETS[FORMS_NAME]
    leaky = leaked.runs["leaky"]
    assert (leaky.state, leaky.attempts) == ("failed", 1)
    q = repr(value)[0]  # the value holds a single quote: repr() writes it in double quotes
    assert leaky.error == f"KeyError: {q}***{q}", leaky.error
    assert leaks(leaked.texts, value) == []
    logs = "\n".join(m for o in leaked.outcomes.by_name["leaky"] for *_, m in o.logs)
    for line in ("raw: ***", f"percent-r: {q}***{q}", f"f-string: {q}***{q}", f"in a dict: {{'password': {q}***{q}}}",
                 'json: {"password": "***"}', f"ascii: {q}***{q}", f"login failed for {q}***{q}"):
        assert line in logs, (line, logs)
    assert f"KeyError: {q}***{q}" in logs  # the logged exception's traceback, masked too
    assert leaked.runs["leaky_child"].state == "skipped" and leaked.runs["fine"].state == "completed"


def test_the_worker_names_the_secret_it_masked(leaked):
    """The outcome names the environment variable ``secret()`` read, for the dispatcher to
    pass on to every later job."""
    (outcome,) = leaked.outcomes.by_name["leaky"]
    assert FORMS_NAME.upper() in outcome.secret_names


@pytest.mark.parametrize("workers", [2])
def test_a_declared_secret_is_masked_on_every_worker_from_its_first_service(workers):
    """Processes, 2 workers; the name is declared (as the config's ``secrets``, lower-case) and
    no service calls ``secret()``: each reads the environment variable itself. Both workers
    mask it from their first service."""
    value = SECRETS[DECLARED_NAME]
    graph = Graph([Service(f"reader_{i}", call=f"{BODIES}:leak_forms",
                           params={"name": DECLARED_NAME, "env": True, "fail": i == 0}) for i in range(4)])
    with ProcessRunner(workers=workers) as runner:
        done = refresh(graph, runner, workers, secrets=[DECLARED_NAME])
    workers_used = {r.worker for r in done.runs.values()}
    assert len(workers_used) == workers, workers_used
    assert done.runs["reader_0"].error == "KeyError: '***'", done.runs["reader_0"].error  # both quotes: repr() writes it in '...'
    assert [done.runs[f"reader_{i}"].state for i in range(1, 4)] == ["completed"] * 3
    assert leaks(done.texts, value) == []


def test_a_secret_one_worker_read_is_masked_on_the_others():
    """Processes, 2 workers, nothing declared: ``first`` reads the secret through ``secret()`` on
    one worker; the services after it read the environment variable themselves, one of them
    on the other worker, which never called ``secret()``: masked there too."""
    value = SECRETS[LEARNED_NAME]
    graph = Graph([
        Service("first", call=f"{BODIES}:leak_forms", params={"name": LEARNED_NAME, "fail": False}),
        *[Service(f"then_{i}", after=("first",), call=f"{BODIES}:leak_forms",
                  params={"name": LEARNED_NAME, "env": True, "fail": False}) for i in range(2)],
    ])
    with ProcessRunner(workers=2) as runner:
        done = refresh(graph, runner, 2)
    assert [r.state for r in done.runs.values()] == ["completed"] * 3
    others = {done.runs[f"then_{i}"].worker for i in range(2)} - {done.runs["first"].worker}
    assert others, "no service ran on the other worker: the test proves nothing"
    assert leaks(done.texts, value) == []


def test_control_an_undeclared_secret_read_from_the_environment_is_not_masked():
    """The control for the two tests above: on fresh workers, a value nobody declared and
    nobody read through ``secret()`` is just data, and the checks above do find it."""
    value = SECRETS[CONTROL_NAME]
    graph = Graph([Service("reader", call=f"{BODIES}:leak_forms",
                           params={"name": CONTROL_NAME, "env": True, "fail": False})])
    with ProcessRunner(workers=1) as runner:
        done = refresh(graph, runner, 1)
    found = leaks(done.texts, value)
    assert "reader outcome: raw" in found and "reader outcome: repr" in found, found


def test_the_config_declares_secrets(tmp_path):
    (tmp_path / "critpath.toml").write_text('secrets = ["db_password", "API_TOKEN"]\n')
    assert load_config(folder=tmp_path).secrets == ("db_password", "API_TOKEN")
    assert load_config(folder=Path(tmp_path / "nowhere")).secrets == ()


@pytest.mark.parametrize("text", ['secrets = "db_password"', "secrets = [1]", 'secrets = [""]', 'secrets = ["a=b"]',
                                  "secrets = [[]]", "[secrets]\na = 1"])
def test_the_config_refuses_secrets_that_are_not_names(tmp_path, text):
    (tmp_path / "critpath.toml").write_text(text + "\n")
    with pytest.raises(CritpathError, match="secrets = .*: must be a list of environment variable names"):
        load_config(folder=tmp_path)
