"""Dask: a ``distributed.LocalCluster`` of worker processes, or an existing
scheduler at ``address``.

Only the service body crosses to Dask. Each worker thread is a slot: a long-lived actor
that receives jobs by method call (``dask_slots``), straight from the client to the worker,
without a round trip through the scheduler per service. When no slot is idle (one is being
replaced) the job goes as a task instead (``client.submit``), with the dispatcher's priority
passed on as Dask's ``priority=`` so that any queueing on the cluster side honours the same order.

A task's completion: a future's done-callback hands it to a gatherer thread, which fetches
the results of every future finished so far with one ``client.gather`` (one round
trip for the batch). Fetching each result inside Dask's single callback thread
costs a round trip per service and capped fan-out near 80 services a second.
No polling: the gatherer blocks on its queue.

Cancelling a running service restarts its worker process (the only way to stop a
body Dask cannot interrupt). Whatever else was on that worker, or was sent to it
before it came back, dies with it: that is the runner's own doing, not a lost
worker, so such a death is reported as ``RestartedWorkerLost`` and the dispatcher
decides what to do (it sends the job again). A job is "exposed" when it was live
while one of our restarts was under way; only exposed jobs that die with
``KilledWorker`` (a task) or lose their slot's worker (``dask_slots``) are reported so.
The restarted worker's slots are started again once it is back.

An existing scheduler (``address``): its workers run elsewhere, in an environment of their
own. Before anything runs, every worker is asked (``bootstrap.probe``, sent by value, so
it runs where ``runners`` is missing too; with a timeout) for the modules the services need
and critpath's own ``runners``; a missing one is one error naming it and the worker. With
``code`` (``base.Code``) the service code is shipped: its zip, named by its content hash,
is a worker plugin (distributed's ``UploadFile``, registered once per version, so an
unchanged project is not sent again and a worker that joins later gets it too), and each
job runs through ``bootstrap.run_job``, which unpacks that version into a folder of its own
and imports the service from there (see ``runners/bootstrap.py``). ``code.requirements``
are installed first (distributed's ``PipInstall``).
"""
from __future__ import annotations

import logging
import queue
import threading
import uuid
from contextlib import ExitStack

from distributed.diagnostics.plugin import WorkerPlugin

from . import bootstrap, layout
from .base import (
    Code,
    Done,
    Job,
    RestartedWorkerLost,
    RunnerSetupError,
    WorkerLost,
    execute,
    first_line,
    job_fields,
    missing_modules,
    probe,
    shared_env_problem,
    warm,
)

#: how long the workers may take to answer critpath's checks and its warm-up
CHECK_TIMEOUT_S = 60.0
CODE_PLUGIN = bootstrap.PREFIX  # + version: the worker plugin that uploads one version
KEEP_PLUGINS = 3  # code versions a scheduler keeps for workers that join later


class _IgnoreCtrlC(WorkerPlugin):
    """SIGINT is ignored in every worker process, restarted ones included."""

    idempotent = True

    def setup(self, worker) -> None:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker's event loop: its main thread


class DaskRunner:
    name = "dask"

    def __init__(self, workers: int = 4, address: str | None = None, code: Code | None = None):
        self.workers = workers
        self.address = address
        self.code = code
        #: (version, top-level modules) of the shipped code the jobs run with; None: as installed
        self._shipped: tuple[str, tuple[str, ...]] | None = None
        self.capacity = workers
        self.cores: float | None = None
        #: threads of each worker process: the services one process runs share its interpreter lock
        self.threads_per_process: tuple[int, ...] = ()
        self._stack = ExitStack()
        self.client = None
        self._slots = None  # dask_slots.Slots: the actors that run the jobs
        self._finished: queue.SimpleQueue = queue.SimpleQueue()
        #: future key -> the dispatcher's callback, while the future is live
        self._live: dict[str, Done] = {}
        self._lock = threading.Lock()  # submit, cancel and the gatherer touch the three below
        self._restarting = 0  # worker restarts of ours under way
        self._exposed: set[str] = set()  # keys live while a restart of ours was under way

    def __enter__(self):
        from distributed import Client, LocalCluster

        try:
            if self.address:
                probe(self.address, 8786)
                self.client = self._stack.enter_context(Client(self.address, timeout="30s"))
                info = self.client.scheduler_info(n_workers=-1)
                if not info["workers"]:
                    raise RunnerSetupError(f"the Dask scheduler at {self.address} has no workers: start some "
                                           f"(dask worker {self.address}) and run again")
                self.capacity = sum(w["nthreads"] for w in info["workers"].values()) or self.workers
                # Dask reports threads, not cores: a worker usually runs one thread per core it has
                self.cores = float(self.capacity)
                # every worker the scheduler lists is one process (``dask worker --nworkers 2`` is two)
                self.threads_per_process = tuple(info["workers"][a]["nthreads"] for a in sorted(info["workers"]))
            else:
                # Prefect's logging config lets distributed's INFO chatter reach the console
                lg = logging.getLogger("distributed")
                if lg.getEffectiveLevel() < logging.WARNING:
                    lg.setLevel(logging.WARNING)
                # a dying worker must surface as a failed attempt that the dispatcher
                # retries and reports, not be re-run silently by the scheduler
                import dask

                self._stack.enter_context(dask.config.set({"distributed.scheduler.allowed-failures": 0}))
                # with allowed-failures 0 the scheduler logs every worker death, ours too (a
                # cancel restarts a worker), as an ERROR, and a restart still under way when the
                # cluster closes as a traceback; critpath reports each lost worker itself.
                # Registered before the cluster, so the level comes back after it has closed
                sched = logging.getLogger("distributed.scheduler")
                self._stack.callback(sched.setLevel, sched.level)
                sched.setLevel(logging.CRITICAL)
                self.threads_per_process = layout.local_dask(self.workers)
                # no dashboard; the scheduler still serves its HTTP routes, on 8787 by default,
                # and warns when that port is taken (a second run, a user's own cluster). The
                # workers log CRITICAL only: a worker that critpath restarts (a cancel, a timeout)
                # can log its heartbeat cut short as an ERROR with a traceback, and what matters
                # to the run (a lost worker, a failed service) critpath reports itself
                cluster = self._stack.enter_context(LocalCluster(
                    n_workers=len(self.threads_per_process), threads_per_worker=self.threads_per_process[0],
                    processes=True, dashboard_address=None, silence_logs=logging.CRITICAL,
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}))
                # critpath's own workers, on loopback: actor calls (the slots) go to them directly
                self.client = self._stack.enter_context(Client(cluster, direct_to_workers=True))
                # critpath handles Ctrl-C for the whole run. A terminal's Ctrl-C also reaches
                # the worker processes, which are in its process group; a worker that the
                # nanny starts again after a cancel must not die of it with a traceback
                self.client.register_plugin(_IgnoreCtrlC(), name="critpath-ignore-ctrl-c")
            if self.address or self.code is not None:
                self._prepare_workers()
            self._warm()
            self._start_slots()
            gatherer = threading.Thread(target=self._gather_loop, name="critpath-dask-gather", daemon=True)
            gatherer.start()
            self._stack.callback(gatherer.join)
            self._stack.callback(self._finished.put, None)  # runs first: stops the gatherer
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        if self._slots is not None:
            self._slots.close()
        self._stack.close()

    def _start_slots(self) -> None:
        from .dask_slots import Slots

        slots = Slots(self.client, _remote("DaskSlot"), self._shipped, CHECK_TIMEOUT_S)
        try:
            slots.start()
        except Exception as exc:
            where = f" at {self.address}" if self.address else ""
            raise RunnerSetupError(f"the Dask workers{where} did not start critpath's slots (one actor per "
                                   f"thread) within {CHECK_TIMEOUT_S:g} s ({type(exc).__name__}: {first_line(exc)}): "
                                   "check that the workers are alive and have memory free") from None
        self._slots = slots

    # -- the workers' code -------------------------------------------------------------------

    def _prepare_workers(self) -> None:
        """Install the requirements, ship the code, and check every worker has what the
        services need, before anything runs; a problem is one ``RunnerSetupError``."""
        code = self.code or Code(ship=False)
        if code.requirements:
            from distributed.diagnostics.plugin import PipInstall

            try:
                self.client.register_plugin(PipInstall(list(code.requirements)), name="critpath-requirements")
            except Exception as exc:
                raise RunnerSetupError(f"installing requirements {', '.join(code.requirements)} on the Dask workers "
                                       f"failed: {first_line(exc)}") from None
        if code.ship and code.archive:
            self._ship(code)
            self._shipped = (code.version, tuple(code.modules))
            wanted = [m for m, _ in code.imports]
        else:  # nothing shipped: the workers must have the services and critpath's runners
            wanted = ["runners", *code.modules, *(m for m, _ in code.imports)]
        self._check(wanted, code)

    def _ship(self, code: Code) -> None:
        from distributed.diagnostics.plugin import UploadFile

        name = CODE_PLUGIN + code.version
        try:
            held = self.client.run_on_scheduler(_remote("plugins_on_scheduler"), callback_timeout=CHECK_TIMEOUT_S)
            if name not in held:  # an unchanged project is not sent again
                self.client.register_plugin(UploadFile(code.archive, load=False), name=name)
                older = [n for n in held if n.startswith(CODE_PLUGIN) and n != name]
                for old in older[:max(0, len(older) - KEEP_PLUGINS + 1)]:
                    self.client.unregister_worker_plugin(old)
        except RunnerSetupError:
            raise
        except Exception as exc:
            raise RunnerSetupError(f"could not ship the service code ({code.size / 2**20:.1f} MiB, version "
                                   f"{code.version}) to the Dask workers at {self.address}: "
                                   f"{type(exc).__name__}: {first_line(exc)}") from None

    def _check(self, wanted: list[str], code: Code) -> None:
        """Every worker can import ``wanted``: one error naming each missing module and worker."""
        try:
            answers = self.client.run(_remote("probe"), list(dict.fromkeys(wanted)),
                                      [n for n, _ in code.shared_env], on_error="return",
                                      callback_timeout=CHECK_TIMEOUT_S)
        except Exception as exc:  # the timeout, or the scheduler gone
            raise RunnerSetupError(f"the Dask workers at {self.address} did not answer critpath's check within "
                                   f"{CHECK_TIMEOUT_S:g} s ({type(exc).__name__}: {first_line(exc)}); check that "
                                   "they are running and can reach this machine") from None
        missing: dict[str, list[str]] = {}
        if "runners" in wanted:  # the scheduler unpickles every task: `execute` and its Job too
            try:
                answers = {**answers, f"the Dask scheduler {self.address}": self.client.run_on_scheduler(
                    _remote("probe"), ["runners"], (), callback_timeout=CHECK_TIMEOUT_S)}
            except Exception as exc:
                raise RunnerSetupError(f"the Dask scheduler at {self.address} did not answer critpath's check "
                                       f"({type(exc).__name__}: {first_line(exc)})") from None
        for addr, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                raise RunnerSetupError(f"the Dask worker {addr} failed critpath's check: {type(answer).__name__}: "
                                       f"{first_line(answer)}")
            for m in answer["missing"]:
                missing.setdefault(m, []).append(addr if addr.startswith("the ") else f"Dask worker {addr}")
        if missing:
            raise RunnerSetupError(missing_modules(missing, code))
        problem = shared_env_problem(code, {f"Dask worker {addr}": answer["env"] for addr, answer in answers.items()
                                            if not addr.startswith("the ")})
        if problem:
            raise RunnerSetupError(problem)

    def _warm(self) -> None:
        """A job on every slot before the clock starts (with the shipped code: each worker
        unpacks it now), within ``CHECK_TIMEOUT_S``."""
        from distributed import wait

        if self._shipped is not None:
            job = job_fields(Job("warm#1", "warm", duration=0.0))
            futs = [self.client.submit(_remote("run_job"), {**job, "key": f"warm#{i}"}, *self._shipped, pure=False)
                    for i in range(self.capacity)]
        else:
            futs = [self.client.submit(warm, i, pure=False) for i in range(self.capacity)]
        try:
            wait(futs, timeout=CHECK_TIMEOUT_S)
        except Exception:
            for f in futs:
                f.cancel()
            where = f" at {self.address}" if self.address else ""
            raise RunnerSetupError(f"the Dask workers{where} did not run critpath's {len(futs)} warm-up jobs "
                                   f"within {CHECK_TIMEOUT_S:g} s: check that the workers are alive and have threads "
                                   "and memory free (the scheduler's dashboard, or its log, says why)") from None
        for f in futs:
            if f.status != "finished":
                exc = f.exception()
                raise RunnerSetupError(f"a warm-up job failed on the Dask workers: {type(exc).__name__}: "
                                       f"{first_line(exc)}")
        self.client.gather(futs)

    def _gather_loop(self) -> None:
        while (fut := self._finished.get()) is not None:
            batch = [fut]
            try:
                while (more := self._finished.get_nowait()) is not None:
                    batch.append(more)
            except queue.Empty:
                more = fut
            ok = [f for f in batch if f.status == "finished"]
            ok_ids = {id(f) for f in ok}  # a status read once: it can change meanwhile
            try:
                results = self.client.gather(ok) if ok else []
            except BaseException:  # a result vanished with its worker: fetch one by one below
                results = None
            for i, f in enumerate(ok):
                done = self._take(f.key)
                if results is not None:
                    done(results[i])
                else:
                    try:
                        done(f.result())
                    except BaseException as exc:
                        done(exc)
            for f in batch:
                if id(f) not in ok_ids:  # error, cancelled, lost
                    try:
                        exc = f.exception() or RuntimeError(f"dask future {f.key} ended as {f.status}")
                    except BaseException as err:
                        exc = err
                    exposed = self._was_exposed(f.key)
                    if type(exc).__name__ == "KilledWorker":
                        kind = RestartedWorkerLost if exposed else WorkerLost
                        exc = kind(f"dask worker died while running {f.key}: {exc}")
                    self._take(f.key)(exc)
            if more is None:
                return

    def _was_exposed(self, key: str) -> bool:
        with self._lock:
            return key in self._exposed

    def _take(self, key: str) -> Done:
        """The callback of a future that has ended, no longer live."""
        with self._lock:
            self._exposed.discard(key)
            return self._live.pop(key)

    def submit(self, job: Job, priority: float, done: Done):
        slot = self._slots.take() if self._slots is not None else None
        if slot is not None:
            return self._slots.send(slot, job, done)
        # no idle slot (one is being replaced): a task, which the scheduler queues for a thread
        key = f"{job.key}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            self._live[key] = done
            if self._restarting:
                self._exposed.add(key)
        if self._shipped is not None:  # the job as plain data: unpickled before `runners` is on the path
            fut = self.client.submit(_remote("run_job"), job_fields(job), *self._shipped, key=key, pure=False,
                                     priority=priority, retries=0)
        else:
            fut = self.client.submit(execute, job, key=key, pure=False, priority=priority, retries=0)
        fut.add_done_callback(self._finished.put)
        return fut

    def submit_behind(self, job: Job, priority: float, done: Done, behind):
        """Queue ``job`` on the slot running ``behind`` (a handle of ``submit``), to start there the
        moment that one ends: the dispatcher's lookahead. None when it cannot be queued there."""
        from .dask_slots import Call

        if self._slots is None or not isinstance(behind, Call):
            return None
        return self._slots.send_behind(behind, job, done)

    def recall(self, handle) -> bool:
        """Take back a job queued by ``submit_behind`` that has not started: True if it never will."""
        return self._slots.recall(handle)

    def cancel(self, handle) -> None:
        """Stop a queued or running service. Dask cannot interrupt a running task's
        thread, so the worker process running it is restarted by its nanny (only in a
        cluster critpath started: a shared cluster's workers are not ours to restart).
        Other services on that worker are reported as killed by our restart (see the
        module docstring)."""
        from .dask_slots import Call

        if isinstance(handle, Call):
            worker = self._slots.cancel(handle, restart=not self.address)
            if worker is not None:
                with self._lock:  # tasks live meanwhile are exposed too
                    self._restarting += 1
                    self._exposed.update(self._live)
                threading.Thread(target=self._restart, args=([worker],), daemon=True,
                                 name="critpath-dask-restart").start()
            return
        fut = handle
        running_on = []
        if not self.address:
            try:
                running_on = [a for a, keys in self.client.processing().items() if fut.key in keys]
            except Exception:  # the cluster may be shutting down
                pass
        if running_on:
            with self._lock:  # from now until the restart is over, every live job is exposed
                self._restarting += 1
                self._exposed.update(self._live)
        fut.cancel()
        if running_on:
            threading.Thread(target=self._restart, args=(running_on,), daemon=True,
                             name="critpath-dask-restart").start()

    def _restart(self, addresses) -> None:
        try:
            self.client.restart_workers(addresses, timeout=60, raise_for_error=False)
        except Exception:  # best effort; the dispatcher has moved on
            pass
        finally:
            with self._lock:
                self._restarting -= 1
            if self._slots is not None:
                self._slots.restarted(addresses)


def _remote(name: str):
    """``bootstrap.<name>``, sent by value: it runs where ``runners`` cannot be imported."""
    return bootstrap.detached()[name]


