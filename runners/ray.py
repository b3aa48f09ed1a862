"""Ray: a local Ray instance started here, or an existing cluster at ``address``.

Only the service body crosses to Ray. Each slot is a long-lived actor (``_Slot``, one
worker process, one job at a time) that receives jobs by method call: an actor call
goes straight to its process, without the worker lease from the raylet that a
``.remote`` task asks for whenever none is held (in a chain: at every hop). The dispatcher still chooses what runs next and when: a submit takes an
idle slot, a completion gives it back before the dispatcher hears of it, and the
runner queues only what the dispatcher sends ahead (``submit_behind``: jobs in line on a
busy slot, the first of which starts there the moment the current one ends; ``recall`` takes
one back). Should
the dispatcher ever have more in flight than there are slots, the extra job runs as a plain
task, one CPU, as before. No Ray-side retries:
the dispatcher owns retries. Completion comes back through ``ObjectRef.future()``'s
done-callback.

Cancelling kills the slot's actor (the only way to stop a body that is stuck; Ray
refuses to force-cancel an actor call), from a thread of its own: ``ray.kill`` waits for
Ray's GCS, which a SIGTERM to the whole process group may be stopping at that moment. An
actor that dies on its own (killed, out of memory, node gone) is a ``WorkerLost``. Either
way the next submit starts a fresh actor for that slot, and takes a warm one first while
it starts. The actors reserve no CPU (``num_cpus=0``): the dispatcher's limit is what
bounds the work, and a service (or the bench's baselines) starting Ray tasks of its own
still finds the CPUs free. On a cluster, each node gets as many actors as it has CPUs.

A local instance is always a private one (``address="local"``): whatever else runs on the
machine, and whatever a stopped ``ray start --head`` left behind (``ray_current_cluster``),
is never joined.

Code: with ``code`` (``base.Code``, the orchestrator's description of the project's service
code), the job's ``runtime_env`` ships it (``py_modules``: one package per top-level
name of the staged copy, which Ray content-hashes, so an unchanged project is not uploaded
again, and whose workers serve this job alone, so two versions never mix), with
``code.requirements`` as its ``pip``. Ray also puts the driver's folder first on its workers'
``sys.path``; each worker moves the shipped packages ahead of it once, so a service runs
the shipped copy on one machine as on many. Nothing else gives workers this process's
folders: a service module that is not shipped, installed on the cluster or in the driver's
folder (for a local instance) is not found, as it would not be on a cluster. Before
anything runs, every node is asked (``bootstrap.probe``, sent by value, with a timeout) for
the modules the services import from elsewhere, and, when nothing is shipped, for the
services and critpath's ``runners``: a missing one is one error naming it and the node.

Environment: Ray writes a job's ``runtime_env`` in clear to its session logs
(``runtime_env_agent.log``), so nothing that may be a credential goes there. A local
instance is started from this process, and its workers inherit this environment as it
is. An existing cluster's workers have their own environment; they also get the
refresh's documented knobs (``FORWARDED``: settings, not credentials). Secrets for
services on a cluster come from Prefect Secret blocks
(``orchestrator.flows.credentials.secret``) or from the cluster's own environment.
"""
from __future__ import annotations

import logging
import os
import sys
import threading

from . import bootstrap
from .base import (
    Code,
    Done,
    Job,
    RunnerSetupError,
    WorkerLost,
    execute,
    first_line,
    missing_modules,
    new_tag,
    probe,
    shared_env_problem,
)
from .slotbook import MAX_QUEUED, free_behind, off_slot

#: Environment variables an existing cluster's workers get from here: the knobs services read
#: (README, "The bundled refresh"). Never every CRITPATH_* variable: one may hold a password.
FORWARDED = ("CRITPATH_SCALE", "CRITPATH_WAREHOUSE", "CRITPATH_FAULT")
#: how long the cluster may take to answer critpath's checks and its warm-up (a first run of a
#: runtime_env unpacks the code on every node)
CHECK_TIMEOUT_S = 120.0
#: ... when the runtime_env also pip-installs ``code.requirements`` on every node
INSTALL_TIMEOUT_S = 900.0
#: how long the dispatcher waits for a slot to say whether a queued job was taken back
RECALL_WAIT_S = 5.0


def runtime_env_for(code: Code | None, env: dict[str, str]) -> dict:
    """The job's ``runtime_env``: the forwarded knobs, the shipped code, its requirements."""
    out: dict = {"env_vars": dict(env)}
    if code is not None and code.ship and code.folder:
        out["py_modules"] = [os.path.join(code.folder, top if os.path.isdir(os.path.join(code.folder, top))
                                          else f"{top}.py") for top in code.modules]
    if code is not None and code.requirements:
        out["pip"] = list(code.requirements)
    return out


class RayRunner:
    name = "ray"

    def __init__(self, workers: int = 4, address: str | None = None, code: Code | None = None):
        self.workers = workers
        self.address = address
        self.code = code
        self.capacity = workers
        self.cores: float | None = None
        self._started = False
        self._lock = threading.Lock()  # submit and cancel (dispatcher), completions (Ray's thread)
        self._idle: list[_SlotRef] = []  # slots free for a job; the most recently freed last
        self._slots: list[_SlotRef] = []  # every live slot, idle or busy
        self._doomed: list[_SlotRef] = []  # slots whose actor failed: killed on the dispatcher's thread
        self._actor_args: tuple = ()

    def __enter__(self):
        import ray

        # local workers inherit this environment; only a remote cluster's need the knobs
        env = {k: os.environ[k] for k in FORWARDED if k in os.environ} if self.address else {}
        kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                      runtime_env=runtime_env_for(self.code, env))
        if ray.is_initialized():  # a user's own ray.init() wins
            pass
        elif self.address:
            if self.address != "auto":
                probe(self.address.removeprefix("ray://"), 6379)
            with _stderr_kept() as said:  # Ray's C++ client reports a refused token there, once a second
                try:
                    ray.init(address=self.address, **kwargs)
                except Exception as exc:
                    said.failed = True
                    raise _explained(exc, self.address, said.text()) from None
            self._started = True
        else:
            # a private instance, whatever else runs here (a stale ray_current_cluster included); it
            # talks over loopback only, not the machine's interface address
            # Ray 2.60 turns token authentication on for a new local instance and says so at
            # WARNING level on every run; on this private instance it is nothing to act on
            notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
            level, notice.level = notice.level, logging.ERROR
            try:
                ray.init(address="local", num_cpus=self.workers, _node_ip_address="127.0.0.1", **kwargs)
            finally:
                notice.setLevel(level)
            self._started = True
        try:
            if self.address:
                self.cores = float(ray.cluster_resources().get("CPU", self.workers))
                self.capacity = int(self.cores)
            shipped = self.code is not None and self.code.ship and bool(self.code.folder)
            if self.address or self.code is not None:
                self._check(shipped)
            if shipped:
                modules = tuple(self.code.modules)
                body = ray.remote(num_cpus=1, max_retries=0)(execute_shipped)
                self._execute = _Bound(body, modules)
                self._actor_args = (modules,)
            else:
                self._execute = ray.remote(num_cpus=1, max_retries=0)(execute)
            # "control": ``recall`` answers on a thread of its own while the slot runs a job
            # a thread per job in line: one runs, those sent ahead wait in ``run`` for their turn
            self._actor = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0,
                                     max_concurrency=1 + MAX_QUEUED,
                                     concurrency_groups={"control": 1})(_Slot)
            self._nodes = self._placement()
            self.warm()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _timeout(self) -> float:
        return INSTALL_TIMEOUT_S if self.code is not None and self.code.requirements else CHECK_TIMEOUT_S

    def _check(self, shipped: bool) -> None:
        """Every node can import what the services need (and ``runners`` when it is not
        shipped): one ``RunnerSetupError`` naming each missing module and node."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        code = self.code or Code(ship=False)
        wanted = [m for m, _ in code.imports] if shipped else ["runners", *code.modules, *(m for m, _ in code.imports)]
        # sent by value: it runs where `runners` cannot be imported
        check = ray.remote(num_cpus=0, max_retries=0)(bootstrap.detached()["probe"])
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(list(dict.fromkeys(wanted)), [k for k, _ in code.shared_env]) for n in nodes]
        try:
            answers = ray.get(refs, timeout=self._timeout())
        except Exception as exc:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise RunnerSetupError(self._why(exc, "critpath's check")) from None
        missing: dict[str, list[str]] = {}
        for node, answer in zip(nodes, answers, strict=True):
            for m in answer["missing"]:
                missing.setdefault(m, []).append(f"Ray node {node.get('NodeManagerAddress', '?')} "
                                                 f"(worker {answer['worker']})")
        if missing:
            raise RunnerSetupError(missing_modules(missing, code))
        if self.address:  # a local instance's workers share this machine's folder
            problem = shared_env_problem(code, {f"Ray node {n.get('NodeManagerAddress', '?')}": a["env"]
                                                for n, a in zip(nodes, answers, strict=True)}, forwarded=True)
            if problem:
                raise RunnerSetupError(problem)

    def _why(self, exc: BaseException, what: str) -> str:
        where = f" at {self.address}" if self.address else ""
        kind = type(exc).__name__
        if kind == "GetTimeoutError":
            return (f"the Ray cluster{where} ran none of {what} within {self._timeout():g} s: check that it has "
                    "free CPUs and that its nodes can reach this machine")
        if kind == "RuntimeEnvSetupError":
            return (f"the Ray cluster{where} could not set up this job's environment (the shipped code"
                    + (f", pip install of {', '.join(self.code.requirements)}" if self.code and self.code.requirements
                       else "") + f"): {_ray_cause(exc)}")
        return f"{what} failed on the Ray cluster{where}: {kind}: {_ray_cause(exc)}"

    def _placement(self) -> list[str | None]:
        """The node of each slot: on a cluster, as many per node as it has CPUs (soft
        affinity: a slot refilled after its node died goes elsewhere); locally, anywhere."""
        import ray

        if not self.address:
            return [None] * self.capacity
        nodes = sorted((n for n in ray.nodes() if n.get("Alive")), key=lambda n: n["NodeID"])
        per_node = [n["NodeID"] for n in nodes for _ in range(int(n.get("Resources", {}).get("CPU", 0)))]
        per_node = per_node[:self.capacity]
        return per_node + [None] * (self.capacity - len(per_node))

    def _new_slot(self, node: str | None) -> "_SlotRef":
        opts: dict = {}
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        return _SlotRef(self._actor.options(**opts).remote(), node)

    def _refill(self) -> None:
        """Start a fresh actor for every slot that lost its own (on the dispatcher's thread:
        Ray's completion thread starts and kills nothing)."""

        with self._lock:
            doomed, self._doomed = self._doomed, []
            missing = []
            if len(self._slots) < self.capacity:
                held = [s.node for s in self._slots]
                for n in self._nodes:  # the nodes of the slots that are gone
                    if n in held:
                        held.remove(n)
                    else:
                        missing.append(n)
            fresh = [self._new_slot(n) for n in missing]
            self._slots.extend(fresh)
            self._idle[:0] = fresh  # taken last: a warm slot first, while the fresh one starts
        if doomed:  # dead already, most likely: a kill that waits must not hold the dispatcher
            _kill_aside(*(s.actor for s in doomed))

    def warm(self) -> None:
        """Run a no-op job on every slot, before the clock starts. It runs ``execute``
        itself in every slot's actor, which imports ``runners`` there now (100-200 ms
        here), not in the first services, on the critical path."""
        import ray

        self._refill()
        with self._lock:
            slots = list(self._idle)
        refs = [s.actor.run.remote(Job(f"warm#{i}", "warm", duration=0.0), *self._actor_args)
                for i, s in enumerate(slots)]
        try:
            ray.get(refs, timeout=self._timeout())
        except Exception as exc:
            raise RunnerSetupError(self._why(exc, "critpath's warm-up jobs")) from None

    def __exit__(self, *exc):
        import ray

        with self._lock:
            slots, self._slots, self._idle = self._slots + self._doomed, [], []
            self._doomed = []
        if self._started:  # ending the job ends its actors (ray.kill would wait on a GCS that a
            self._started = False  # SIGTERM to the process group may have stopped already)
            ray.shutdown()
        else:  # a user's own ray.init() outlives this runner: its actors must not
            _kill(*(slot.actor for slot in slots))

    def submit(self, job: Job, priority: float, done: Done):
        if self._doomed or len(self._slots) < self.capacity:
            self._refill()
        with self._lock:
            slot = self._idle.pop() if self._idle else None
            call = _Call(slot)
            if slot is not None:
                slot.calls.append(call)
        try:
            call.ref = (slot.actor.run.remote(job, *self._actor_args, tag=call.tag) if slot is not None
                        else self._execute.remote(job))
        except BaseException:
            if slot is not None:
                with self._lock:
                    slot.calls.remove(call)
                    self._idle.append(slot)
            raise
        self._watch(call, job, done)
        return call

    def submit_behind(self, job: Job, priority: float, done: Done, behind):
        """Queue ``job`` on the slot running ``behind`` (a handle of ``submit``): its actor runs
        it the moment that one ends (the dispatcher's lookahead). None when it cannot be."""
        with self._lock:
            if not isinstance(behind, _Call) or not free_behind(behind):
                return None
            slot = behind.slot
            call = _Call(slot)
            slot.calls.append(call)
        try:
            call.ref = slot.actor.run.remote(job, *self._actor_args, tag=call.tag, after=behind.tag)
        except BaseException:
            with self._lock:
                slot.calls.remove(call)
            raise
        self._watch(call, job, done)
        return call

    def recall(self, handle) -> bool:
        """Take back a job queued by ``submit_behind`` that has not started: True if it never will."""
        import ray

        call: _Call = handle
        with self._lock:
            if call.finished or call.slot is None or call.slot.gone:
                return False
        try:
            back = ray.get(call.slot.actor.recall.options(concurrency_group="control").remote(call.tag),
                           timeout=RECALL_WAIT_S)
        except Exception:  # the actor cannot answer: the call reports that itself
            return False
        if back:
            with self._lock:
                call.recalled = call.finished = True
                off_slot(call, self._idle)
        return bool(back)

    def _watch(self, call: "_Call", job: Job, done: Done) -> None:
        def callback(f):
            try:
                out = f.result()
            except BaseException as exc:  # the actor died, the task was cancelled ...
                if call.recalled:
                    return
                self._ended(call, ok=False)
                if type(exc).__name__ in _LOST:
                    exc = WorkerLost(f"ray worker died while running {job.name!r}: {_ray_cause(exc)}")
                done(exc)
            else:
                if call.recalled or out is None:  # taken back before it started: ``recall`` tidies up
                    return
                self._ended(call, ok=True)  # the slot is free before the dispatcher hears of it
                done(out)

        call.ref.future().add_done_callback(callback)

    def _ended(self, call: "_Call", ok: bool) -> None:
        with self._lock:
            call.finished = True
            slot = call.slot
            if slot is None or slot.gone:
                return
            if ok:
                off_slot(call, self._idle)
            else:  # a slot whose call failed is not trusted again
                slot.gone = True
                self._slots.remove(slot)
                self._doomed.append(slot)

    def cancel(self, handle) -> None:
        import ray

        call: _Call = handle
        if call.slot is None:
            ray.cancel(call.ref, force=True)
            return
        with self._lock:
            if call.finished or call.slot.gone:
                return  # it ended meanwhile: its actor may already run the next job
            call.slot.gone = True
            self._slots.remove(call.slot)
        _kill_aside(call.slot.actor)  # the next submit refills


def _kill_aside(*actors) -> None:
    """``_kill`` on a thread of its own: ``ray.kill`` waits for Ray's GCS, which a SIGTERM to
    the whole process group may be stopping right now, and the dispatcher must not wait with it."""
    threading.Thread(target=_kill, args=actors, name="critpath-ray-kill", daemon=True).start()


def _kill(*actors) -> None:
    import ray

    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already gone, or Ray is shutting down
            pass


#: Ray's errors that mean the process running the service is gone
_LOST = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "RayActorError", "ActorDiedError",
         "ActorUnavailableError", "LocalRayletDiedError")


class _Slot:
    """One slot's worker process (a Ray actor): runs the jobs it is given, one at a time.

    A job sent ahead (the lookahead) is already inside ``run`` while the one before it runs,
    waiting for its turn (``_turn``), so it starts the moment that one ends: as a second Ray
    task in line it would first wait for Ray's own work between two tasks (about 1 ms here).
    An actor with several threads does not keep its calls in order, so a job sent ahead names
    the one it was sent behind (``after``) and waits until that one has had its turn: of a line
    of jobs sent ahead, only the first waits for ``_turn``. ``recall``
    runs beside them (its own concurrency group): a job sent ahead is taken back if it has not
    had its turn, even if it has not come yet."""

    def __init__(self):
        import collections

        self._lock = threading.Condition()
        self._turn = threading.Lock()  # one job at a time; only the next in line waits for it
        self._recalled: set[str] = set()
        self._started = collections.deque(maxlen=1024)  # tags of the last jobs that had their turn

    def run(self, job: Job, modules: tuple[str, ...] | None = None, tag: str | None = None,
            after: str | None = None):
        if after is not None:
            with self._lock:
                self._lock.wait_for(lambda: after in self._started or tag in self._recalled)
        with self._turn:
            if tag is not None:
                with self._lock:
                    if tag in self._recalled:
                        self._recalled.discard(tag)
                        return None
                    self._started.append(tag)
                    self._lock.notify_all()
            return execute(job, shared=False) if modules is None else execute_shipped(job, modules, shared=False)

    def recall(self, tag: str) -> bool:
        with self._lock:
            if tag in self._started:
                return False
            self._recalled.add(tag)
            self._lock.notify_all()
            return True


class _SlotRef:
    """The driver's record of one slot: its actor and where it was placed."""

    def __init__(self, actor, node: str | None):
        self.actor, self.node = actor, node
        self.gone = False  # killed, or its call failed: never given a job again
        self.calls: list[_Call] = []  # sent here and not ended, in order: one running, one queued at most


class _Call:
    """A submitted job: the runner's handle for ``cancel``."""

    def __init__(self, slot: _SlotRef | None):
        self.slot = slot
        self.ref = None
        self.finished = False
        self.recalled = False  # taken back before it started: its answer is nobody's
        self.tag = new_tag()  # names it on the actor (``recall``); unique where job keys repeat


class _Bound:
    """A remote function with its trailing arguments bound: ``.remote(job)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def remote(self, job):
        return self.fn.remote(job, *self.args)


_preferred = threading.Lock()
_shipped_first = False


def execute_shipped(job: Job, modules: tuple[str, ...], shared: bool = True):
    """``execute`` on a Ray worker, the shipped packages first on ``sys.path``. Ray puts the
    driver's folder (which may hold the project itself, on one machine) before them: the
    service must run the copy shipped with this job, as it would on any other machine."""
    global _shipped_first
    if not _shipped_first:
        with _preferred:
            if not _shipped_first:
                _prefer_shipped(modules)
                _shipped_first = True
    return execute(job, shared)


def _prefer_shipped(modules) -> None:
    import importlib

    mine = [p for p in sys.path if "runtime_resources" in p and ("py_modules_files" in p or "working_dir_files" in p)]
    if not mine:
        return
    rest = [p for p in sys.path if p not in mine]
    sys.path[:] = [*mine, *rest]
    drop = set(modules) - {"runners"}
    for name in list(sys.modules):  # imported from elsewhere before the path was put right
        if name.partition(".")[0] in drop:
            del sys.modules[name]
    importlib.invalidate_caches()


def _ray_cause(exc: BaseException) -> str:
    """The line of a Ray error that says what went wrong (Ray's own text leads with banners)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "No module named" in ln:
            return ln[:500]
    return (lines[-1] if lines else type(exc).__name__)[:500]


class _stderr_kept:
    """File descriptor 2 goes to a file for the block. If the block fails, what was written
    there is for the caller to explain (``text``) and is not shown; otherwise it is written to
    the real stderr at the end, so nothing is lost."""

    def __init__(self):
        self.failed = False
        self._text = ""

    def __enter__(self):
        import tempfile

        try:
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, ValueError):  # no stderr to redirect: keep going without
            self._saved = None
        return self

    def text(self) -> str:
        if self._saved is not None and not self._text:
            self._file.flush()
            self._file.seek(0)
            self._text = self._file.read().decode(errors="replace")
        return self._text

    def __exit__(self, *exc):
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if not self.failed:
            text = self.text()
            if text:
                try:
                    os.write(2, text.encode())
                except OSError:
                    pass
        self._file.close()


def _explained(exc: BaseException, address: str, said: str = "") -> BaseException:
    """``ray.init``'s failure said as what it is, from the exception and from what Ray wrote on
    stderr meanwhile (``said``): token authentication above all."""
    text = f"{type(exc).__name__}: {exc}\n{said}"
    if "InvalidAuthToken" in text or "AuthenticationError" in text or "UNAUTHENTICATED" in text:
        mode = os.environ.get("RAY_AUTH_MODE")
        now = f" (RAY_AUTH_MODE is {mode!r} here)" if mode else " (RAY_AUTH_MODE is not set here)"
        return RunnerSetupError(
            f"the Ray cluster at {address} requires token authentication{now}: Ray 2.60's 'ray start --head' "
            "turns it on. Set RAY_AUTH_MODE=token in critpath's environment, with the cluster's token in "
            "~/.ray/auth_token, in the file RAY_AUTH_TOKEN_PATH names, or in RAY_AUTH_TOKEN ('ray get-auth-token' "
            "on the head prints it); or start the head with RAY_AUTH_MODE=disabled")
    cause = [ln for ln in said.splitlines() if "Error" in ln or "error" in ln]
    if cause and type(exc).__name__ == "ConnectionError":  # Ray's own words say why, not the exception
        return ConnectionError(f"{first_line(exc)} ({cause[-1].strip()[:300]})")
    return exc
